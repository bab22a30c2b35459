"""Quality rules declared on a dataset, evaluated on the rows a run is about to publish.

A rule measures one thing (null values, values out of range or outside a list, a column above another, duplicate
keys, references that point nowhere, how old the newest value is) and compares it with its threshold. A `fail` rule
that does not hold stops the publication: no version, the run fails with the reason, its inputs stay in landing. A
`warn` rule that does not hold publishes and flags the version. Results are kept in the catalog, one per rule:
`{rule, severity, passed, observed, threshold, detail}`.

    quality=(Q.not_null("order_id"), Q.unique("order_id"), Q.in_range("price", minimum=0, max_fraction=0.01),
             Q.references("customer_id", "customers", "customer_id", severity="warn"),
             Q.fresh("order_time", max_age_hours=48, severity="warn"))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cronlake.core.runner import JobError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

SEVERITIES = ("fail", "warn")
PASSED, WARNED = "passed", "warned"


class QualityFailed(JobError):
    """A `fail` rule did not hold: the message names the dataset, the rule and what was measured."""


@dataclass(frozen=True)
class Rule:
    """One quality rule; build it with the functions below."""

    kind: str
    columns: tuple[str, ...]
    severity: str = "fail"
    max_fraction: float = 0.0
    params: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"rule {self.name}: severity must be one of {SEVERITIES}, not {self.severity!r}")

    def param(self, name: str) -> Any:
        return dict(self.params).get(name)

    @property
    def name(self) -> str:
        details = ",".join(f"{k}={v}" for k, v in self.params if k != "values")
        return f"{self.kind}({','.join(self.columns)}{';' + details if details else ''})"


def not_null(*columns: str, max_fraction: float = 0.0, severity: str = "fail") -> Rule:
    return Rule("not_null", columns, severity, max_fraction)


def in_range(column: str, minimum: float | None = None, maximum: float | None = None, max_fraction: float = 0.0,
             severity: str = "fail") -> Rule:
    """Values within [minimum, maximum] (nulls are not counted: that is `not_null`'s job)."""
    return Rule("in_range", (column,), severity, max_fraction, (("minimum", minimum), ("maximum", maximum)))


def accepted_values(column: str, values: Sequence[Any], max_fraction: float = 0.0, severity: str = "fail") -> Rule:
    return Rule("accepted_values", (column,), severity, max_fraction, (("values", tuple(values)),))


def at_most(column: str, bound: str, max_fraction: float = 0.0, severity: str = "fail") -> Rule:
    """`column` is not above the `bound` column of the same row (rows with a null in either are not counted)."""
    return Rule("at_most", (column, bound), severity, max_fraction)


def unique(*columns: str, severity: str = "fail") -> Rule:
    """No two rows share these columns' values (among the rows published, which the job anti-joins on its key)."""
    return Rule("unique", columns, severity)


def references(column: str, dataset: str, ref_column: str, max_fraction: float = 0.0, severity: str = "fail"
               ) -> Rule:
    """Every non-null `column` value exists as `ref_column` of `dataset` (its current version, plus what the
    same run publishes to it)."""
    return Rule("references", (column,), severity, max_fraction, (("dataset", dataset), ("ref_column", ref_column)))


def fresh(column: str, max_age_hours: float, severity: str = "warn") -> Rule:
    """The newest `column` time is at most `max_age_hours` older than the run."""
    return Rule("fresh", (column,), severity, params=(("max_age_hours", max_age_hours),))


Resolver = Callable[[str], "DataFrame"]


def evaluate(frame: DataFrame, rules: Sequence[Rule], resolve: Resolver | None = None,
             now: datetime | None = None) -> list[dict[str, Any]]:
    """Measure every rule on `frame`; `resolve(dataset)` gives the frame a `references` rule looks into."""
    from pyspark.sql import functions as F

    if not rules:
        return []
    now = now or datetime.now(UTC)
    measures: list[Any] = [F.count(F.lit(1)).alias("_rows")]
    for index, rule in enumerate(rules):
        column = F.col(rule.columns[0]) if rule.columns else None
        if rule.kind == "not_null":
            bad = F.lit(False)
            for name in rule.columns:
                bad = bad | F.col(name).isNull()
            measures.append(F.sum(bad.cast("long")).alias(f"_r{index}"))
        elif rule.kind == "in_range":
            low, high = rule.param("minimum"), rule.param("maximum")
            bad = F.lit(False)
            if low is not None:
                bad = bad | (column < F.lit(low))
            if high is not None:
                bad = bad | (column > F.lit(high))
            measures.append(F.sum(F.coalesce(bad, F.lit(False)).cast("long")).alias(f"_r{index}"))
        elif rule.kind == "accepted_values":
            bad = column.isNotNull() & ~column.isin(list(rule.param("values")))
            measures.append(F.sum(bad.cast("long")).alias(f"_r{index}"))
        elif rule.kind == "at_most":
            bad = F.coalesce(column > F.col(rule.columns[1]), F.lit(False))
            measures.append(F.sum(bad.cast("long")).alias(f"_r{index}"))
        elif rule.kind == "fresh":
            measures.append(F.max(column).alias(f"_r{index}"))
    totals = frame.agg(*measures).first()
    rows = int(totals["_rows"]) if totals else 0
    results = []
    for index, rule in enumerate(rules):
        if rule.kind in ("not_null", "in_range", "accepted_values", "at_most"):
            bad_rows = int(totals[f"_r{index}"] or 0)
            results.append(fraction_result(rule, bad_rows, rows))
        elif rule.kind == "unique":
            duplicates = frame.groupBy(*rule.columns).count().where("count > 1").agg(
                F.coalesce(F.sum(F.col("count") - 1), F.lit(0)).alias("extra")).first()["extra"]
            results.append(result(rule, int(duplicates) == 0, int(duplicates), 0,
                                  f"{duplicates} rows repeat a key already seen"))
        elif rule.kind == "references":
            if resolve is None:
                raise ValueError(f"rule {rule.name} needs a resolver for dataset {rule.param('dataset')}")
            target = resolve(rule.param("dataset")).select(F.col(rule.param("ref_column")).alias("_ref")).distinct()
            values = frame.where(F.col(rule.columns[0]).isNotNull())
            orphans = values.join(target, values[rule.columns[0]] == target["_ref"], "left_anti").count()
            results.append(fraction_result(rule, orphans, rows, what="point to no "
                                           f"{rule.param('dataset')}.{rule.param('ref_column')}"))
        elif rule.kind == "fresh":
            newest = totals[f"_r{index}"]
            limit = float(rule.param("max_age_hours"))
            if newest is None:
                results.append(result(rule, False, None, limit, "no value to date the data"))
                continue
            if newest.tzinfo is None:
                newest = newest.replace(tzinfo=UTC)
            age = round((now - newest).total_seconds() / 3600, 2)
            results.append(result(rule, age <= limit, age, limit, f"newest value {newest.isoformat()} is {age} h old"))
        else:
            raise ValueError(f"unknown rule kind {rule.kind!r}")
    return results


def fraction_result(rule: Rule, bad_rows: int, rows: int, what: str = "") -> dict[str, Any]:
    fraction = bad_rows / rows if rows else 0.0
    detail = f"{bad_rows} of {rows} rows " + (what or {"not_null": "have a null",
                                                          "in_range": "are out of range",
                                                          "accepted_values": "hold a value not accepted",
                                                          "at_most": f"have {' > '.join(rule.columns)}"}[rule.kind])
    return result(rule, fraction <= rule.max_fraction, round(fraction, 6), rule.max_fraction, detail)


def result(rule: Rule, passed: bool, observed: Any, threshold: Any, detail: str) -> dict[str, Any]:
    return {"rule": rule.name, "severity": rule.severity, "passed": bool(passed), "observed": observed,
            "threshold": threshold, "detail": detail}


def status(results: Sequence[dict[str, Any]]) -> str:
    """`passed`, or `warned` when a rule did not hold (a failed `fail` rule never reaches a version)."""
    return PASSED if all(r["passed"] for r in results) else WARNED


def raise_on_failure(dataset: str, results: Sequence[dict[str, Any]]) -> None:
    failed = [r for r in results if not r["passed"] and r["severity"] == "fail"]
    if failed:
        raise QualityFailed(f"{dataset}: quality rule failed, no version published: "
                            + "; ".join(f"{r['rule']} observed {r['observed']} > {r['threshold']} ({r['detail']})"
                                        for r in failed))

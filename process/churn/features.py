"""Churn features and scoring shared by training, the stream and its checks: one preparation of the CSV cells.

`prepare` turns customer rows of text cells (a Spark read of the CSV, or the stream's messages) into typed columns
with ANSI-safe casts (`try_cast`: a blank `TotalCharges` becomes null, never an error); `build_pipeline` is the
Spark ML pipeline (median imputation, string indexers and one-hot encoders that keep unseen categories in an extra
slot, a random forest with a fixed seed); `score` adds `churn_probability`. Drivers are explainable, not SHAP: the
customer's attribute values whose churn rate on the training split is highest above the base rate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from cronlake.contracts.churn import CATEGORICAL, CHARGE_BANDS, CUSTOMER, NUMERIC, TENURE_BANDS, band

if TYPE_CHECKING:
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.sql import DataFrame

TEXT_SCHEMA = ", ".join(f"`{name}` STRING" for name in CUSTOMER.names)
DRIVER_MIN_SUPPORT = 30  # an attribute value seen fewer times in training explains nothing
DRIVERS_SHOWN = 3


def prepare(cells: DataFrame) -> DataFrame:
    """Text cells → trimmed categories, DOUBLE numbers (null when blank or malformed) and `label` (1 = churned)."""
    from pyspark.sql import functions as F

    return cells.select(
        F.trim(F.col(f"`{CUSTOMER.names[0]}`")).alias(CUSTOMER.names[0]),
        *(F.trim(F.col(f"`{name}`")).alias(name) for name in CATEGORICAL),
        *(F.expr(f"try_cast(trim(`{name}`) AS DOUBLE)").alias(name) for name in NUMERIC),
        F.when(F.trim("Churn") == "Yes", 1.0).when(F.trim("Churn") == "No", 0.0).alias("label"),
    )


def build_pipeline(trees: int, max_depth: int, seed: int) -> Pipeline:
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import RandomForestClassifier
    from pyspark.ml.feature import Imputer, OneHotEncoder, StringIndexer, VectorAssembler

    imputed = [f"{name}_imputed" for name in NUMERIC]
    indexed = [f"{name}_index" for name in CATEGORICAL]
    encoded = [f"{name}_onehot" for name in CATEGORICAL]
    return Pipeline(stages=[
        Imputer(inputCols=list(NUMERIC), outputCols=imputed, strategy="median"),
        StringIndexer(inputCols=list(CATEGORICAL), outputCols=indexed, handleInvalid="keep",
                      stringOrderType="alphabetAsc"),
        OneHotEncoder(inputCols=indexed, outputCols=encoded, handleInvalid="keep", dropLast=False),
        VectorAssembler(inputCols=imputed + encoded, outputCol="features"),
        RandomForestClassifier(labelCol="label", featuresCol="features", numTrees=trees, maxDepth=max_depth,
                               seed=seed),
    ])


def score(model: PipelineModel, prepared: DataFrame) -> DataFrame:
    """`prepared` rows with `churn_probability` (the forest's probability of class 1)."""
    from pyspark.ml.functions import vector_to_array

    scored = model.transform(prepared).withColumn("churn_probability", vector_to_array("probability")[1])
    return scored.drop("features", "rawPrediction", "probability", "prediction",
                       *(c for c in scored.columns if c.endswith(("_imputed", "_index", "_onehot"))))


def attributes(row: Mapping[str, Any]) -> dict[str, str]:
    """The attribute values drivers are read from: the categories, and tenure and monthly charges as bands."""
    values = {name: row[name] for name in CATEGORICAL if row.get(name)}
    values["tenure"] = band(row.get("tenure"), TENURE_BANDS)
    values["MonthlyCharges"] = band(row.get("MonthlyCharges"), CHARGE_BANDS)
    return {name: value for name, value in values.items() if value is not None}


def driver_table(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Base churn rate and, per attribute value seen at least DRIVER_MIN_SUPPORT times, its churn rate."""
    seen: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    total, churned = 0, 0.0
    for row in rows:
        total += 1
        churned += row["label"]
        for name, value in attributes(row).items():
            seen[(name, value)][0] += 1
            seen[(name, value)][1] += row["label"]
    rates: dict[str, dict[str, float]] = defaultdict(dict)
    for (name, value), (count, positives) in sorted(seen.items()):
        if count >= DRIVER_MIN_SUPPORT:
            rates[name][value] = round(positives / count, 4)
    return {"base_rate": round(churned / total, 4) if total else 0.0, "rates": dict(rates)}


def drivers(row: Mapping[str, Any], table: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The customer's attribute values with the highest training churn rate above the base rate (at most 3)."""
    base, rates = table["base_rate"], table["rates"]
    found = [{"feature": name, "value": value, "churn_rate": rates[name][value],
              "lift": round(rates[name][value] / base, 2) if base else None}
             for name, value in attributes(row).items() if rates.get(name, {}).get(value, 0.0) > base]
    return sorted(found, key=lambda d: (-d["churn_rate"], d["feature"]))[:DRIVERS_SHOWN]

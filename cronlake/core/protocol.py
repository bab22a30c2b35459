"""The claim → process → commit → archive protocol shared by every batch job.

A run's life is written to a manifest, `checkpoints/<job>/runs/<run_id>.json`, rewritten atomically:

1. **claim**: the visible files of `landing/<source>/` are listed in a manifest in state `claimed`.
2. **process**: the job reads them and writes its outputs. Files go through `Claim.publish_parquet`: Spark
   writes to `processed/<dataset>/_staging/<run_id>/`, then each part file is renamed into the dataset with
   the run id in its name. A versioned dataset goes through `Claim.publish_version`: its quality rules are
   measured first (a failed `fail` rule stops the run), then its files are written the same way, not yet in the
   table's log. MongoDB writes must be keyed upserts, so that redoing them changes nothing.
3. **commit**: the manifest moves to state `committed`, with the versions to publish, and fixes where every
   input goes: `archive/<source>/` or `quarantine/<source>/` with its reason.
4. **publish and archive**: each pending version is committed to its Delta table (tagged with the run id, so
   never twice) and recorded in the catalog; the inputs are moved as the manifest says; then the manifest moves
   to state `archived`. OpenLineage events mark the run's start, completion or failure.

Recovery runs before every claim. A `committed` manifest is finished (its versions and remaining moves done). A
`claimed` one is rolled back: its staging folders and run-tagged part files are deleted, and its inputs, never
moved before commit, are claimed again. A run that fails is rolled back at once. So a crash at any point loses
nothing and duplicates nothing, and the catalog holds one version document per committed version.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cronlake.core import catalog, lineage, quality, versioned
from cronlake.core.contracts import Dataset
from cronlake.core.lake import Lake, clean
from cronlake.core.runner import RunContext, utcnow

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

CLAIMED, COMMITTED, ARCHIVED, ROLLED_BACK = "claimed", "committed", "archived", "rolled_back"


def reject(reason: str, record: Any, **origin: Any) -> dict[str, Any]:
    """One rejected record, the same shape wherever it was refused: why, the record as it came (a dict of
    fields, or the raw text), and where it came from (file, topic/partition/offset, run...)."""
    return {"reason": reason, "record": record, "origin": origin}


def keep_rejects(context: RunContext, lake: Lake, stem: str, rejects: list[dict[str, Any]],
                 kept_before: Sequence[dict[str, Any]] = ()) -> None:
    """Write `rejects` (made by `reject`) to `<stem>.rejects.jsonl`, one JSON line each, after `kept_before` (the
    ones this run already wrote there: a lake file is rewritten, never appended to), and count the new ones."""
    if not rejects:
        return
    target = f"{stem}.rejects.jsonl"
    lake.put_text(target, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n"
                                  for r in [*kept_before, *rejects]))
    reasons: dict[str, int] = {}
    for one in rejects:
        reasons[one["reason"]] = reasons.get(one["reason"], 0) + 1
    context.count("records_quarantined", len(rejects))
    context.log("quarantine.records", kept_in=target, records=len(rejects), reasons=dict(list(reasons.items())[:10]))


@dataclass
class Claim:
    """The files one run took from landing, and what the job decided about each."""

    context: RunContext
    lake: Lake
    source: str
    datasets: tuple[str, ...]
    inputs: list[str]
    quarantined: dict[str, str] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)
    published: dict[str, tuple[Dataset, DataFrame]] = field(default_factory=dict)
    rejected: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.context.run_id

    @property
    def accepted(self) -> list[str]:
        """Inputs not quarantined, in claim order."""
        return [path for path in self.inputs if path not in self.quarantined]

    def uris(self, paths: Iterable[str] | None = None) -> list[str]:
        return [self.lake.uri(path) for path in (self.accepted if paths is None else paths)]

    def quarantine(self, path: str, reason: str) -> None:
        """Send a whole input file to quarantine instead of archive; the run goes on."""
        self.quarantined[path] = reason
        self.context.log("quarantine.file", file=path, reason=reason)

    def reject_records(self, path: str, rejects: list[dict[str, Any]]) -> None:
        """Keep malformed records of an input beside the quarantined files (`reject` shapes them), in
        `<input name>.<job>.rejects.jsonl`: the job's name keeps them apart from the `<input name>.rejects.jsonl`
        a landing consumer wrote for the same file, and every call of the run for one input adds to that file."""
        stem = f"quarantine/{self.source}/{posixpath.basename(path)}.{self.context.job}"
        keep_rejects(self.context, self.lake, stem, rejects, self.rejected.get(path, []))
        self.rejected.setdefault(path, []).extend(rejects)

    def publish_parquet(self, frame: DataFrame, dataset: str, partition_by: list[str] | None = None) -> int:
        """Write a DataFrame into `processed/<dataset>/` so that a rerun of this run cannot duplicate it."""
        writer = frame.write.mode("overwrite")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        return self.publish(dataset, writer.parquet)

    def publish_version(self, frame: DataFrame, dataset: Dataset, upstream: Iterable[Dataset] = ()) -> int:
        """Check `frame` against the dataset's quality rules, write it, and make it the dataset's next version at
        commit; returns the rows published (none, and no version, for an empty frame). `upstream` names the
        datasets it was derived from, recorded with their current versions (or, for one this run published
        before, the version this run commits); a `references` rule looks into its
        dataset's current version plus what this run publishes to it (publish the referenced dataset first)."""
        from pyspark.sql import functions as F

        if not dataset.versioned:
            raise ValueError(f"{dataset.name} is not versioned: declare versioned=True or use publish_parquet")
        upstream = tuple(upstream)
        frame = frame.select(*dataset.column_names).persist()
        rows = frame.count()
        if rows == 0:
            self.context.log("output.empty", dataset=dataset.name)
            frame.unpersist()
            return 0
        known = {d.name: d for d in upstream} | {name: d for name, (d, _) in self.published.items()}

        def resolve(name: str) -> DataFrame:
            if name not in known:
                raise ValueError(f"{dataset.name}: a references rule looks into {name}, which is neither upstream "
                                 "nor published earlier in this run")
            current = known[name].read(self.context.spark, self.lake)
            mine = self.published.get(name)
            return current if mine is None else current.unionByName(mine[1])

        results = quality.evaluate(frame, dataset.quality, resolve, now=utcnow())
        self.context.log("quality", dataset=dataset.name, rows=rows,
                         failed=[r["rule"] for r in results if not r["passed"]])
        quality.raise_on_failure(dataset.name, results)
        before = len(self.outputs)
        writer = frame.write.mode("overwrite")
        if dataset.partition_by:
            writer = writer.partitionBy(*dataset.partition_by)
        self.publish(dataset.name, writer.parquet)
        written = self.outputs[before:]
        counts = {}
        if written:
            per_file = (self.context.spark.read.parquet(*self.uris(written))
                        .groupBy(F.input_file_name().alias("file")).count().collect())
            counts = {r["file"].rsplit("/", 1)[-1]: int(r["count"]) for r in per_file}
        sizes = {f.path: f.size for f in self.lake.list(dataset.path, recursive=True)}
        self.versions.append({
            "dataset": dataset.name, "declaration": declaration(dataset), "rows": rows, "quality": results,
            "schema_json": versioned.arrow_schema_json(arrow_schema_of(frame)),
            "schema": [{"name": f.name, "type": f.dataType.simpleString()} for f in frame.schema.fields],
            "files": [{"path": posixpath.relpath(path, dataset.path), "bytes": sizes[path],
                       "rows": counts.get(posixpath.basename(path), 0)} for path in written],
            "upstream": [{"dataset": d.name, "same_run": True} if d.name in self.published
                         else {"dataset": d.name, "version": versioned.current_version(self.lake, d)
                               if d.versioned else None} for d in upstream],
        })
        self.published[dataset.name] = (dataset, frame)
        return rows

    def read(self, dataset: Dataset, where: Mapping[str, Sequence[str]] | None = None) -> DataFrame:
        """The dataset as this run leaves it: its current version plus what the run publishes to it at commit
        (serving documents are upserted before the commit, from this)."""
        from pyspark.sql import functions as F

        frame = dataset.read(self.context.spark, self.lake, where)
        if dataset.name not in self.published:
            return frame
        mine = self.published[dataset.name][1]
        for column, values in (where or {}).items():
            mine = mine.where(F.col(column).isin(list(values)))
        return frame.unionByName(mine)

    def publish(self, dataset: str, write: Callable[[str], None]) -> int:
        """Publish into `processed/<dataset>/` the Parquet files `write(staging_uri)` writes (any engine, Hive
        partition folders kept): each part file is renamed into the dataset with the run id in its name."""
        if dataset not in self.datasets:
            raise ValueError(f"dataset {dataset!r} was not declared by the job ({self.datasets})")
        staging = staging_folder(dataset, self.run_id)
        self.context.log("output.begin", dataset=dataset)
        write(self.lake.uri(staging))
        parts = [f for f in self.lake.list(staging, recursive=True) if f.path.endswith(".parquet")]
        for index, part in enumerate(parts):
            relative = posixpath.relpath(part.path, staging)
            target = posixpath.join(f"processed/{dataset}", posixpath.dirname(relative),
                                    f"part-{self.run_id}-{index:05d}.parquet")
            self.lake.move(part.path, target)
            self.outputs.append(target)
            self.context.log("output.file", file=target)
        self.lake.delete(staging, recursive=True)
        self.context.log("output.end", dataset=dataset, files=len(parts))
        return len(parts)


def arrow_schema_of(frame: DataFrame) -> Any:
    """The frame's schema in Arrow, timestamps in microseconds and UTC, as they are written."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(frame.schema, timezone="UTC")


def manifest_path(job: str, run_id: str) -> str:
    return f"checkpoints/{job}/runs/{run_id}.json"


def staging_folder(dataset: str, run_id: str) -> str:
    return f"processed/{dataset}/_staging/{run_id}"


def write_manifest(lake: Lake, job: str, manifest: dict[str, Any]) -> None:
    manifest["updated_at"] = utcnow().isoformat()
    lake.put_text(manifest_path(job, manifest["run_id"]), json.dumps(manifest, indent=1, sort_keys=True))


def open_manifests(lake: Lake, job: str) -> list[dict[str, Any]]:
    manifests = [json.loads(lake.read_text(f.path)) for f in lake.list(f"checkpoints/{job}/runs")]
    return [m for m in manifests if m["state"] in (CLAIMED, COMMITTED)]


def destination(lake: Lake, zone: str, source: str, path: str, run_id: str) -> str:
    """Where an input goes in `zone`: its own name, or its name tagged with the run id if that is taken."""
    name = posixpath.basename(path)
    target = f"{zone}/{source}/{name}"
    return f"{zone}/{source}/{run_id}.{name}" if lake.exists(target) else target


def publish_versions(context: RunContext, lake: Lake, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Commit the versions a committed manifest holds and record them in the catalog (both idempotent)."""
    if not manifest.get("versions"):
        return []
    moved_to = {move["from"]: move["to"] for move in manifest["moves"] if not move.get("reason")}
    inputs = [{"path": path, "archived_as": moved_to[path], **file_facts(lake, path, moved_to[path])}
              for path in manifest["inputs"] if path in moved_to]
    published = []
    numbers: dict[str, int] = {}
    for pending in manifest.get("versions", []):
        dataset = declared(pending["declaration"])
        number = versioned.commit(lake, dataset, manifest["run_id"], manifest["job"], pending["files"],
                                  pending["schema_json"])
        numbers[dataset.name] = number
        upstream = [{"dataset": u["dataset"], "version": numbers[u["dataset"]]} if u.get("same_run") else u
                    for u in pending["upstream"]]
        total = versioned.row_count(versioned.open_table(lake, dataset, version=number))
        catalog.record_version(
            context.settings, dataset, run_id=manifest["run_id"], job=manifest["job"], rows=pending["rows"],
            location=versioned.table_uri(lake, dataset), format="delta", schema=pending["schema"], inputs=inputs,
            upstream=upstream, quality=pending["quality"], version=number, total_rows=total)
        context.log("version.published", dataset=dataset.name, version=number, rows=pending["rows"])
        published.append({"name": dataset.path, "version": number})
    return published


def file_facts(lake: Lake, landing: str, archived: str) -> dict[str, Any]:
    """Size and SHA-256 of an input, wherever it is now (before or after its move)."""
    import hashlib

    data = lake.read_bytes(landing if lake.exists(landing) else archived)
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def declaration(dataset: Dataset) -> dict[str, Any]:
    """What the commit and the catalog need of a dataset's declaration, as the manifest keeps it."""
    return {"name": dataset.name, "produced_by": dataset.produced_by, "partition_by": list(dataset.partition_by),
            "key": list(dataset.key), "owner": dataset.owner, "description": dataset.description,
            "tags": list(dataset.tags)}


def declared(facts: dict[str, Any]) -> Dataset:
    return Dataset(facts["name"], (), facts["produced_by"], tuple(facts["partition_by"]), versioned=True,
                   key=tuple(facts["key"]), owner=facts["owner"], description=facts["description"],
                   tags=tuple(facts["tags"]))


def finish_moves(context: RunContext, lake: Lake, manifest: dict[str, Any]) -> None:
    """Publish the versions and do the moves a committed manifest decided; what is already done is skipped."""
    published = publish_versions(context, lake, manifest)
    for move in manifest["moves"]:
        if move.get("reason") and not lake.exists(move["to"] + ".reason.json"):
            lake.put_text(move["to"] + ".reason.json", json.dumps(
                {"reason": move["reason"], "job": manifest["job"], "run_id": manifest["run_id"],
                 "file": move["from"], "at": manifest["committed_at"]}, indent=1))
        already_there = not lake.exists(move["from"]) and lake.exists(move["to"])
        lake.move(move["from"], move["to"])
        if not already_there:
            zone = "files_quarantined" if move.get("reason") else "files_archived"
            context.count(zone)
            context.log("archive.file" if zone == "files_archived" else "quarantine.moved",
                        file=move["from"], to=move["to"], of_run=manifest["run_id"])
    manifest["state"] = ARCHIVED
    write_manifest(lake, manifest["job"], manifest)
    lineage.emit(context, "COMPLETE", inputs=[{"name": move["to"]} for move in manifest["moves"]
                                              if not move.get("reason")], outputs=published)


def roll_back(context: RunContext, lake: Lake, manifest: dict[str, Any]) -> None:
    """Delete everything an uncommitted run wrote; its inputs are still in landing."""
    run_id = manifest["run_id"]
    removed = 0
    for dataset in manifest["datasets"]:
        lake.delete(staging_folder(dataset, run_id), recursive=True)
        for output in lake.list(f"processed/{dataset}", recursive=True):
            if posixpath.basename(output.path).startswith(f"part-{run_id}-"):
                lake.delete(output.path)
                removed += 1
    manifest["state"] = ROLLED_BACK
    write_manifest(lake, manifest["job"], manifest)
    context.log("recover.rolled_back", of_run=run_id, outputs_removed=removed)


def recover(context: RunContext, lake: Lake) -> None:
    """Bring every unfinished run of this job to a clean end before a new claim."""
    for manifest in open_manifests(lake, context.job):
        if manifest["state"] == COMMITTED:
            context.log("recover.finish_archive", of_run=manifest["run_id"])
            finish_moves(context, lake, manifest)
        else:
            roll_back(context, lake, manifest)


def run_batch(
    context: RunContext,
    lake: Lake,
    source: str,
    datasets: tuple[str, ...],
    process: Callable[[Claim], None],
    max_files: int | None = None,
) -> Claim | None:
    """Recover, claim the landing files of `source`, process them, commit, archive. None if nothing landed."""
    recover(context, lake)
    landed = [f.path for f in lake.list(f"landing/{clean(source)}")][:max_files]
    if not landed:
        context.log("claim.empty", source=source)
        return None
    claim = Claim(context, lake, source, datasets, landed)
    manifest: dict[str, Any] = {
        "job": context.job, "run_id": context.run_id, "state": CLAIMED, "source": source,
        "datasets": list(datasets), "inputs": landed, "claimed_at": utcnow().isoformat(),
    }
    write_manifest(lake, context.job, manifest)
    context.log("claim", source=source, files=len(landed))
    lineage.emit(context, "START", inputs=[{"name": path} for path in landed])

    try:
        process(claim)
    except BaseException:
        lineage.emit(context, "FAIL", inputs=[{"name": path} for path in landed])
        roll_back(context, lake, manifest)
        raise
    finally:
        for _, frame in claim.published.values():
            frame.unpersist()

    manifest.update(
        state=COMMITTED,
        committed_at=utcnow().isoformat(),
        outputs=claim.outputs,
        versions=claim.versions,
        counters=dict(context.counters),
        moves=[
            {"from": path, "to": destination(lake, "quarantine", source, path, context.run_id),
             "reason": claim.quarantined[path]}
            if path in claim.quarantined
            else {"from": path, "to": destination(lake, "archive", source, path, context.run_id)}
            for path in landed
        ],
    )
    write_manifest(lake, context.job, manifest)
    context.log("commit", outputs=len(claim.outputs), accepted=len(claim.accepted),
                quarantined=len(claim.quarantined))
    finish_moves(context, lake, manifest)
    context.log("archive.done", archived=context.counters["files_archived"],
                quarantined=context.counters["files_quarantined"])
    return claim

"""The claim → process → commit → archive protocol shared by every batch job.

A run's life is written to a manifest, `checkpoints/<job>/runs/<run_id>.json`, rewritten atomically:

1. **claim**: the visible files of `landing/<source>/` are listed in a manifest in state `claimed`.
2. **process**: the job reads them and writes its outputs. Files go through `Claim.publish_parquet`: Spark
   writes to `processed/<dataset>/_staging/<run_id>/`, then each part file is renamed into the dataset with
   the run id in its name. MongoDB writes must be keyed upserts, so that redoing them changes nothing.
3. **commit**: the manifest moves to state `committed` and fixes where every input goes: `archive/<source>/`
   or `quarantine/<source>/` with its reason.
4. **archive**: inputs are moved as the manifest says; then the manifest moves to state `archived`.

Recovery runs before every claim. A `committed` manifest is finished (its remaining moves done). A `claimed`
one is rolled back: its staging folders and run-tagged part files are deleted, and its inputs, never moved
before commit, are claimed again. So a crash at any point loses nothing and duplicates nothing.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cronlake.core.lake import Lake, clean
from cronlake.core.runner import RunContext, utcnow

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

CLAIMED, COMMITTED, ARCHIVED, ROLLED_BACK = "claimed", "committed", "archived", "rolled_back"


def reject(reason: str, record: Any, **origin: Any) -> dict[str, Any]:
    """One rejected record, the same shape wherever it was refused: why, the record as it came (a dict of
    fields, or the raw text), and where it came from (file, topic/partition/offset, run...)."""
    return {"reason": reason, "record": record, "origin": origin}


def keep_rejects(context: RunContext, lake: Lake, stem: str, rejects: list[dict[str, Any]]) -> None:
    """Write `rejects` (made by `reject`) to `<stem>.rejects.jsonl`, one JSON line each, and count them."""
    if not rejects:
        return
    target = f"{stem}.rejects.jsonl"
    lake.put_text(target, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rejects))
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
        """Keep malformed records of an input beside the quarantined files (`reject` shapes them)."""
        keep_rejects(self.context, self.lake, f"quarantine/{self.source}/{posixpath.basename(path)}", rejects)

    def publish_parquet(self, frame: DataFrame, dataset: str, partition_by: list[str] | None = None) -> int:
        """Write a DataFrame into `processed/<dataset>/` so that a rerun of this run cannot duplicate it."""
        writer = frame.write.mode("overwrite")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        return self.publish(dataset, writer.parquet)

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


def finish_moves(context: RunContext, lake: Lake, manifest: dict[str, Any]) -> None:
    """Do the moves a committed manifest decided; moves already done are skipped."""
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

    process(claim)

    manifest.update(
        state=COMMITTED,
        committed_at=utcnow().isoformat(),
        outputs=claim.outputs,
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

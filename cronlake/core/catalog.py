"""The data catalog, in the ops database: what each dataset is, and what each of its versions holds and came from.

- `catalog_datasets`, one document per dataset (`_id` = name): owner, description, tags, schema (and its column
  names, for search), partitioning,
  key, location, format, the job that produces it, its current version and that version's quality status.
- `catalog_versions`, one document per committed version (`_id` = "<dataset>|<version>"): the run and job that
  made it, rows added and rows in the table, the landing files it was made from (landing and archive paths, bytes,
  SHA-256), the upstream dataset versions it was derived from, the quality results, creation time and the job's
  parameters.

A version document is written only once its version is committed, keyed by dataset and version, so a recovered
run rewrites the same document: one document per committed version, none for a run that failed. Lineage is read
back from these documents: a serving document's `lineage_run` → the versions that run published → their
landing files and upstream versions, recursively.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pymongo import DESCENDING

from cronlake.core import sink
from cronlake.core.contracts import Collection, Dataset
from cronlake.core.mongo import ops_db
from cronlake.core.opsdb import JOB_RUNS
from cronlake.core.runner import utcnow
from cronlake.core.settings import Settings

DATASETS = Collection(
    "catalog_datasets", key=("_id",), produced_by="every job that publishes a dataset version", database="ops",
    indexes=(("tags",), ("columns",), ("-updated_at",)),
    fields=("name", "owner", "description", "tags", "schema", "columns", "partition_by", "key", "location", "format",
            "produced_by", "current_version", "quality_status", "updated_at"))
VERSIONS = Collection(
    "catalog_versions", key=("_id",), produced_by="every job that publishes a dataset version", database="ops",
    indexes=(("dataset", "-version"), ("run_id",)),
    fields=("dataset", "version", "run_id", "job", "rows", "total_rows", "input_files", "upstream", "quality",
            "quality_status", "created_at", "parameters", "location", "format"))
CATALOG_COLLECTIONS = (DATASETS, VERSIONS)


def version_id(dataset: str, version: int) -> str:
    return f"{dataset}|{version}"


def record_version(
    settings: Settings,
    dataset: Dataset | str,
    *,
    run_id: str,
    job: str,
    rows: int,
    location: str,
    format: str,
    schema: Iterable[Mapping[str, str]],
    inputs: Iterable[Mapping[str, Any]] = (),
    upstream: Iterable[Mapping[str, Any]] = (),
    quality: Iterable[Mapping[str, Any]] = (),
    parameters: Mapping[str, Any] | None = None,
    version: int | None = None,
    total_rows: int | None = None,
) -> int:
    """Record one committed version (and its dataset's description) and return its number. A versioned table
    passes the version it committed; any other output (an export at a path) gets the next number, or the number
    this run already got if it records again."""
    from cronlake.core.quality import status

    db = ops_db(settings)
    name = dataset.name if isinstance(dataset, Dataset) else dataset
    quality = [dict(q) for q in quality]
    if version is None:
        earlier = db[VERSIONS.name].find_one({"dataset": name, "run_id": run_id})
        if earlier is not None:
            version = int(earlier["version"])
        else:
            newest = latest_version(settings, name)
            version = 0 if newest is None else int(newest["version"]) + 1
    quality_status = status(quality)
    now = utcnow()
    sink.upsert(db, VERSIONS, [{
        "_id": version_id(name, version), "dataset": name, "version": version, "run_id": run_id, "job": job,
        "rows": rows, "total_rows": rows if total_rows is None else total_rows,
        "input_files": [dict(i) for i in inputs],
        "upstream": [dict(u) for u in upstream], "quality": quality, "quality_status": quality_status,
        "created_at": now, "parameters": dict(parameters or {}), "location": location, "format": format,
    }])
    schema = [dict(c) for c in schema]
    described: dict[str, Any] = {"_id": name, "name": name, "schema": schema, "columns": [c["name"] for c in schema],
                                 "location": location, "format": format, "updated_at": now}
    if isinstance(dataset, Dataset):
        described.update(owner=dataset.owner, description=dataset.description, tags=list(dataset.tags),
                         partition_by=list(dataset.partition_by), key=list(dataset.key),
                         produced_by=dataset.produced_by)
    current = db[DATASETS.name].find_one({"_id": name}, {"current_version": 1}) or {}
    if current.get("current_version") is None or version >= current["current_version"]:
        described.update(current_version=version, quality_status=quality_status)
    sink.upsert(db, DATASETS, [described])
    return version


def datasets(settings: Settings) -> list[dict[str, Any]]:
    return list(ops_db(settings)[DATASETS.name].find({}).sort("_id", 1))


def dataset(settings: Settings, name: str) -> dict[str, Any] | None:
    return ops_db(settings)[DATASETS.name].find_one({"_id": name})


def versions(settings: Settings, name: str, limit: int = 100) -> list[dict[str, Any]]:
    """Newest first."""
    return list(ops_db(settings)[VERSIONS.name].find({"dataset": name}).sort("version", DESCENDING).limit(limit))


def version(settings: Settings, name: str, number: int) -> dict[str, Any] | None:
    return ops_db(settings)[VERSIONS.name].find_one({"_id": version_id(name, number)})


def latest_version(settings: Settings, name: str) -> dict[str, Any] | None:
    found = versions(settings, name, limit=1)
    return found[0] if found else None


def version_as_of(settings: Settings, name: str, moment: datetime) -> dict[str, Any] | None:
    """The version that was current at `moment` (the newest created at or before it)."""
    return next(iter(ops_db(settings)[VERSIONS.name].find({"dataset": name, "created_at": {"$lte": moment}})
                     .sort("version", DESCENDING).limit(1)), None)


def search(settings: Settings, text: str | None = None, column: str | None = None, tag: str | None = None
           ) -> list[dict[str, Any]]:
    """Datasets whose name or description contains `text` (case-insensitive), that have a column named
    `column`, and that carry `tag`; every criterion given must hold."""
    query: dict[str, Any] = {}
    if text:
        pattern = {"$regex": re.escape(text), "$options": "i"}
        query["$or"] = [{"name": pattern}, {"description": pattern}]
    # `$in` rather than equality: the same match on MongoDB, and nx-27017 misses equality on an indexed array
    if column:
        query["columns"] = {"$in": [column]}
    if tag:
        query["tags"] = {"$in": [tag]}
    return list(ops_db(settings)[DATASETS.name].find(query).sort("_id", 1))


def lineage(settings: Settings, name: str, number: int, depth: int = 10) -> dict[str, Any]:
    """The tree a version came from: its run, its landing files, and the same for each upstream version."""
    found = version(settings, name, number)
    if found is None:
        raise LookupError(f"{name} has no version {number} in the catalog")
    node = {"dataset": name, "version": number, "run_id": found["run_id"], "job": found["job"],
            "created_at": found["created_at"], "input_files": found["input_files"], "upstream": []}
    if depth > 0:
        for parent in found["upstream"]:
            if parent.get("version") is None:
                node["upstream"].append({"dataset": parent["dataset"], "version": None})
                continue
            try:
                node["upstream"].append(lineage(settings, parent["dataset"], int(parent["version"]), depth - 1))
            except LookupError:
                node["upstream"].append({"dataset": parent["dataset"], "version": parent["version"],
                                         "missing": "not in the catalog"})
    return node


def lineage_of_run(settings: Settings, run_id: str) -> dict[str, Any]:
    """What a run (e.g. a serving document's `lineage_run`) was: its job run record and the lineage of every
    version it published."""
    db = ops_db(settings)
    published = list(db[VERSIONS.name].find({"run_id": run_id}).sort("dataset", 1))
    return {"run": db[JOB_RUNS.name].find_one({"_id": run_id}), "run_id": run_id,
            "versions": [lineage(settings, v["dataset"], int(v["version"])) for v in published]}

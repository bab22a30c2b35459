"""Versioned datasets: Delta Lake tables whose Parquet files Spark writes and whose log delta-rs commits.

A versioned dataset is the folder `processed/<name>/` holding Parquet part files (Hive partition folders) and a
`_delta_log/`. Spark (or any engine) writes the part files; the driver commits them with `deltalake` (delta-rs) as
one new table version, so no JVM package is needed and any Delta reader (Spark with delta-spark, DuckDB's delta
extension, polars, delta-rs) reads the table without this kit. Timestamps are written as microseconds
(`cronlake.core.spark` sets it), the only unit every Delta reader takes.

Each commit carries the run id in its commit info (`cronlake.run_id`). `commit` looks for it before writing, so a
run recovered after a crash never adds its files twice. Files of a run that never committed are invisible to
Delta readers (they read the log, not the folder) and are deleted by the protocol's roll back.

Works on `file://` lakes and on `hdfs://` lakes (delta-rs speaks HDFS's RPC protocol natively, as the user in
`HADOOP_USER_NAME`; the edge container sits inside the cluster network, so the DataNodes' container host names
resolve).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable

    from cronlake.core.contracts import Dataset
    from cronlake.core.lake import Lake

RUN_KEY = "cronlake.run_id"
HISTORY_DEPTH = 50  # a crashed run's commit, if any, is among the newest: one job writes each dataset


def table_uri(lake: Lake, dataset: Dataset) -> str:
    return lake.uri(dataset.path)


def exists(lake: Lake, dataset: Dataset) -> bool:
    return lake.exists(f"{dataset.path}/_delta_log/00000000000000000000.json")


def open_table(lake: Lake, dataset: Dataset, version: int | None = None, as_of: datetime | None = None
               ) -> DeltaTable | None:
    """The table at its current version, at `version`, or as it was at time `as_of`; None before its first
    version. A version that does not exist is a LookupError naming the versions that do."""
    from deltalake import DeltaTable

    if not exists(lake, dataset):
        if version is not None or as_of is not None:
            raise LookupError(f"{dataset.name} has no version yet")
        return None
    table = DeltaTable(table_uri(lake, dataset))
    current = table.version()
    if version is not None:
        if not 0 <= version <= current:
            raise LookupError(f"{dataset.name} has no version {version} (versions 0 to {current})")
        table.load_as_version(version)
    elif as_of is not None:
        try:
            table.load_as_version(as_of)
        except Exception as exc:  # delta-rs raises a generic error for a time before the first commit
            raise LookupError(f"{dataset.name} has no version as of {as_of.isoformat()}: {exc}") from None
    return table


def current_version(lake: Lake, dataset: Dataset) -> int | None:
    table = open_table(lake, dataset)
    return None if table is None else table.version()


def file_uris(table: DeltaTable, where: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """The part files of the table's loaded version, only those of the given partition values."""
    if not where:
        return table.file_uris()
    keep = []
    for action in add_actions(table):
        if all(str(action.get(f"partition.{column}")) in {str(v) for v in values} for column, values in where.items()):
            keep.append(action["path"])
    root = table.table_uri.rstrip("/")
    return [path if "://" in path else f"{root}/{path}" for path in keep]


def add_actions(table: DeltaTable) -> list[dict[str, Any]]:
    """The loaded version's files: path, size, num_records, `partition.<column>` values."""
    import pyarrow as pa

    return pa.table(table.get_add_actions(flatten=True)).to_pylist()


def row_count(table: DeltaTable) -> int:
    """Rows in the table's loaded version, from the per-file counts in its log (no data read)."""
    return sum(int(action["num_records"] or 0) for action in add_actions(table))


def committed_version(lake: Lake, dataset: Dataset, run_id: str) -> int | None:
    """The version this run committed, if it did."""
    table = open_table(lake, dataset)
    if table is None:
        return None
    for entry in table.history(HISTORY_DEPTH):
        if entry.get(RUN_KEY) == run_id:
            return int(entry["version"])
    return None


def partition_values(relative_path: str) -> dict[str, str | None]:
    """`day=2024-04-17/hour=3/part-x.parquet` → {"day": "2024-04-17", "hour": "3"} (Hive's null folder → None)."""
    values: dict[str, str | None] = {}
    for folder in posixpath.dirname(relative_path).split("/"):
        if "=" in folder:
            name, value = folder.split("=", 1)
            value = unquote(value)
            values[name] = None if value == "__HIVE_DEFAULT_PARTITION__" else value
    return values


def arrow_schema(dataset: Dataset) -> pa.Schema:
    """The declared columns as Arrow types (timestamps in microseconds, UTC)."""
    import pyarrow as pa

    kinds = {"string": pa.string(), "int": pa.int32(), "long": pa.int64(), "double": pa.float64(),
             "bool": pa.bool_(), "timestamp": pa.timestamp("us", tz="UTC"), "date": pa.date32()}
    return pa.schema([(column.name, kinds[column.kind]) for column in dataset.columns])


def arrow_schema_json(schema: pa.Schema) -> str:
    """A Delta schema (JSON) for an Arrow schema: what the manifest keeps until the commit."""
    from deltalake import Schema

    return Schema.from_arrow(schema).to_json()


def commit(lake: Lake, dataset: Dataset, run_id: str, job: str, files: Sequence[Mapping[str, Any]],
           schema_json: str) -> int:
    """Add `files` ({path relative to the table, bytes, rows}) to the table as one new version tagged with the
    run id, creating the table at version 0 if needed; a run that already committed gets its version back."""
    from deltalake import Schema
    from deltalake.transaction import AddAction, CommitProperties, create_table_with_add_actions

    done = committed_version(lake, dataset, run_id)
    if done is not None:
        return done
    now_ms = int(datetime.now().timestamp() * 1000)
    actions = [AddAction(f["path"], int(f["bytes"]), partition_values(f["path"]), now_ms, True,
                         json.dumps({"numRecords": int(f["rows"])})) for f in files]
    schema = Schema.from_json(schema_json)
    properties = CommitProperties(custom_metadata={RUN_KEY: run_id, "cronlake.job": job})
    partition_by = list(dataset.partition_by) or None
    table = open_table(lake, dataset)
    if table is None:
        create_table_with_add_actions(table_uri(lake, dataset), schema, actions, mode="error",
                                      partition_by=partition_by, name=dataset.name,
                                      description=dataset.description or None, commit_properties=properties)
        return 0
    table.create_write_transaction(actions, mode="append", schema=schema, partition_by=partition_by,
                                   commit_properties=properties)
    table.update_incremental()
    return table.version()


def read_arrow(lake: Lake, dataset: Dataset, version: int | None = None, as_of: datetime | None = None,
               where: Mapping[str, Sequence[str]] | None = None) -> pa.Table:
    """The dataset as an Arrow table through delta-rs (no Spark); empty with the declared columns before its
    first version."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = open_table(lake, dataset, version, as_of)
    if table is None:
        return arrow_schema(dataset).empty_table()
    data = table.to_pyarrow_table()
    for column, values in (where or {}).items():
        data = data.filter(pc.is_in(pc.cast(data[column], pa.string()), pa.array([str(v) for v in values])))
    return data

"""The building blocks of a pipeline's contracts module: record types, processed datasets, serving collections.

A record type is declared once, as fields; its Spark schema and its CSV codec are derived from it, so a landing
file, a Kafka message and a Spark read cannot drift apart. A dataset names a folder of `processed/` with its
stored schema and partitioning. A collection names a MongoDB serving collection with its key, fields, read
indexes and the job that fills it (`cronlake.core.sink` writes it and creates its indexes; readers only take its
names and fields, and never need write rights).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

    from cronlake.core.lake import Lake
    from cronlake.core.quality import Rule

SPARK_TYPES = {"string": "STRING", "int": "INT", "long": "BIGINT", "double": "DOUBLE", "bool": "BOOLEAN",
               "timestamp": "TIMESTAMP", "date": "DATE"}
TIMESTAMP_TEXT = "%Y-%m-%dT%H:%M:%SZ"  # how a timestamp field is written in CSV and JSON: UTC, seconds, Z


class RecordError(ValueError):
    """A row that does not fit its record contract; `reason` says why in one line."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Field:
    """One typed field. An `optional` field may be empty (None); a string field is otherwise any text, or must
    not be empty with `non_empty`; `minimum` bounds numbers."""

    name: str
    kind: str = "string"
    optional: bool = False
    non_empty: bool = False
    minimum: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in SPARK_TYPES:
            raise ValueError(f"field {self.name}: unknown kind {self.kind!r} (known: {', '.join(SPARK_TYPES)})")

    @property
    def spark_type(self) -> str:
        return SPARK_TYPES[self.kind]

    def to_text(self, value: Any) -> str:
        """The field's value as a CSV cell: `true`/`false`, ISO UTC time with Z, empty string for None."""
        if value is None:
            return ""
        if self.kind == "bool":
            return "true" if value else "false"
        if self.kind == "timestamp" and isinstance(value, datetime):
            return value.astimezone(UTC).strftime(TIMESTAMP_TEXT)
        return str(value)

    def from_text(self, cell: str | None) -> Any:
        """A CSV cell → the typed value (timestamps stay ISO text); RecordError naming the field otherwise."""
        if cell is None:
            raise RecordError(f"missing column {self.name}")
        if cell == "":
            if self.optional:
                return None
            if self.kind == "string" and not self.non_empty:
                return ""
            raise RecordError(f"missing {self.name}")
        if self.kind in ("int", "long"):
            try:
                value: Any = int(cell)
            except ValueError:
                raise RecordError(f"{self.name} is not an integer: {cell!r}") from None
        elif self.kind == "double":
            try:
                value = float(cell)
            except ValueError:
                raise RecordError(f"{self.name} is not a number: {cell!r}") from None
        elif self.kind == "bool":
            if cell not in ("true", "false"):
                raise RecordError(f"{self.name} is not true/false: {cell!r}")
            return cell == "true"
        elif self.kind == "timestamp":
            try:
                moment = datetime.fromisoformat(cell.replace("Z", "+00:00"))
            except ValueError:
                raise RecordError(f"{self.name} is not an ISO-8601 time: {cell!r}") from None
            if moment.tzinfo is None:
                raise RecordError(f"{self.name} has no UTC offset: {cell!r}")
            return cell
        else:
            return cell
        if self.minimum is not None and value < self.minimum:
            raise RecordError(f"negative {self.name}: {value}" if self.minimum == 0
                              else f"{self.name} below {self.minimum:g}: {value}")
        return value


@dataclass(frozen=True)
class RecordType:
    """A flat record: its fields in contract order (the CSV column order)."""

    name: str
    fields: tuple[Field, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    def of_kind(self, *kinds: str) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.kind in kinds)

    @property
    def not_null(self) -> tuple[str, ...]:
        """The fields that must have a value (all but the optional ones)."""
        return tuple(f.name for f in self.fields if not f.optional)

    def spark_schema(self, text_timestamps: bool = False, extra: Sequence[str] = ()) -> str:
        """The Spark DDL schema; `text_timestamps` reads timestamp fields as strings (parsed afterwards with an
        explicit format, so a bad time is a reject, not a silent null); `extra` appends columns (`name TYPE`)."""
        columns = [f"{f.name} {'STRING' if text_timestamps and f.kind == 'timestamp' else f.spark_type}"
                   for f in self.fields]
        return ", ".join([*columns, *extra])

    def csv_header(self) -> list[str]:
        return list(self.names)

    def to_csv_row(self, record: Mapping[str, Any]) -> list[str]:
        return [f.to_text(record[f.name]) for f in self.fields]

    def from_csv_row(self, row: Sequence[str] | Mapping[str, str]) -> dict[str, Any]:
        """CSV cells (a list in field order, or a dict by column) → a typed record; RecordError otherwise."""
        if not isinstance(row, Mapping):
            if len(row) != len(self.fields):
                raise RecordError(f"expected {len(self.fields)} columns, got {len(row)}")
            row = dict(zip(self.names, row, strict=True))
        return {f.name: f.from_text(row.get(f.name)) for f in self.fields}


@dataclass(frozen=True)
class Dataset:
    """A processed dataset: `processed/<name>/`, Parquet, its stored columns and partition columns.

    A `versioned` dataset is a Delta Lake table (`cronlake.core.versioned`): every publication is a new version,
    readable later by number or by time, described in the catalog with its `owner`, `description`, `tags`, the
    `key` that identifies a row, and checked by its `quality` rules (`cronlake.core.quality`) before it is
    published."""

    name: str
    columns: tuple[Field, ...]
    produced_by: str
    partition_by: tuple[str, ...] = ()
    versioned: bool = False
    key: tuple[str, ...] = ()
    owner: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    quality: tuple[Rule, ...] = ()

    @property
    def path(self) -> str:
        return f"processed/{self.name}"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def spark_schema(self) -> str:
        return ", ".join(f"{c.name} {c.spark_type}" for c in self.columns)

    def read(self, spark: SparkSession, lake: Lake, where: Mapping[str, Sequence[str]] | None = None,
             version: int | None = None, as_of: datetime | None = None) -> DataFrame:
        """The dataset by its stored schema (an empty frame before its first write), filtered on partition
        values, e.g. `where={"day": ["2024-04-17"]}`. A filter on the first partition column lists and reads only
        those partitions' folders, so the cost of a read does not grow with the rest of the dataset. A versioned
        dataset reads its current version, or `version` / the version current at `as_of`."""
        from pyspark.sql import functions as F

        where = dict(where or {})
        if self.versioned:
            from cronlake.core import versioned

            table = versioned.open_table(lake, self, version, as_of)
            files = versioned.file_uris(table, where) if table is not None else []
        else:
            if version is not None or as_of is not None:
                raise ValueError(f"{self.name} is not versioned: it has no version to read")
            first = self.partition_by[0] if self.partition_by else None
            folders = ([f"{self.path}/{first}={value}" for value in where[first]] if first in where else [self.path])
            files = [lake.uri(folder) for folder in folders
                     if any(f.path.endswith(".parquet") for f in lake.list(folder, recursive=True))]
        if not files:
            return spark.createDataFrame([], self.spark_schema())
        frame = (spark.read.schema(self.spark_schema()).option("basePath", lake.uri(self.path)).parquet(*files))
        for column, values in where.items():
            frame = frame.where(F.col(column).isin(list(values)))
        return frame

    def read_arrow(self, lake: Lake, version: int | None = None, as_of: datetime | None = None,
                   where: Mapping[str, Sequence[str]] | None = None) -> pa.Table:
        """A versioned dataset as an Arrow table through delta-rs, without Spark."""
        from cronlake.core import versioned

        if not self.versioned:
            raise ValueError(f"{self.name} is not versioned: read it with Spark")
        return versioned.read_arrow(lake, self, version, as_of, where)


@dataclass(frozen=True)
class Collection:
    """A MongoDB collection: unique `key` (documents are addressed by `_id` built from `id_order`, default the
    key; a key of `("_id",)` means the writer gives each document's `_id` itself), the `fields` its documents
    hold, the read `indexes` its readers need (each a tuple of field names, `-name` for descending), the job
    that fills it, and its database ("data" or "ops")."""

    name: str
    key: tuple[str, ...]
    fields: tuple[str, ...]
    produced_by: str
    indexes: tuple[tuple[str, ...], ...] = ()
    database: str = "data"
    id_order: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for fields in self.indexes:
            if tuple(name.removeprefix("-") for name in fields) == self.key:
                # MongoDB refuses a second index on the same keys with other options ("already exists with
                # different options"), and the unique key index already serves these reads.
                raise ValueError(f"{self.name}: index {fields} repeats the unique key {self.key}")

    def document_id(self, document: Mapping[str, Any]) -> str:
        return "|".join(str(document[k]) for k in (self.id_order or self.key))

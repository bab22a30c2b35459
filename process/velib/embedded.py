"""The Velib batch on one node with DuckDB: the same phases and outputs as the Spark runner of `velib_daily`.

Chosen by `velib_daily --runner auto` when the Spark master is local and the lake is on `file://` (one machine:
no JVM to start, no shuffle, about 10× less time than Spark for a day of one-minute snapshots); the cluster
keeps Spark. Same rules as `process.velib.daily` (which owns them): the CSV header check, the malformed-row
reasons, the copy kept among conflicting copies (`PREFERENCE`, greatest first, nulls smallest as in Spark),
the anti-join against the keys of the touched days only, Parquet partitioned by `day` published through the
protocol, and the statistics with the very SQL text of `process.velib.stats` (DuckDB runs Spark's SQL as is).
`tests/test_velib_daily.py` proves both runners give identical Parquet rows, rejects and MongoDB documents.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cronlake.core.protocol import Claim
from ingest.velib.records import BOOL_FIELDS, FIELDS, FLOAT_FIELDS, INT_FIELDS
from process.velib.daily import (
    DATASET,
    KEY,
    PREFERENCE,
    REQUIRED,
    STATUS_COLUMNS,
    check_headers,
    count_rows,
    keep_rejects,
)
from process.velib.stats import EMPTY_SQL, STATION_SQL, ZONE_SQL

if TYPE_CHECKING:
    import duckdb

    from cronlake.core.lake import Lake
    from cronlake.core.runner import RunContext

TYPES = {**dict.fromkeys(INT_FIELDS, "INTEGER"), **dict.fromkeys(BOOL_FIELDS, "BOOLEAN"),
         **dict.fromkeys(FLOAT_FIELDS, "DOUBLE")}


def local_path(uri: str) -> Path:
    """The filesystem path of a `file://` lake URI."""
    return Path(urlsplit(uri).path)


def connect(timezone: str) -> duckdb.DuckDBPyConnection:
    import duckdb

    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute(f"SET VARIABLE velib_timezone = '{timezone}'")
    return connection


def first_line(uri: str) -> str:
    with open(local_path(uri), encoding="utf-8", newline="") as handle:
        return handle.readline().rstrip("\r\n")


def parsed(column: str) -> str:
    """The typed value of a CSV cell, NULL when empty or not of its type (Spark's CSV parser rules)."""
    cell = f'"{column}"'
    if column in INT_FIELDS:
        return f"CASE WHEN regexp_full_match({cell}, '[+-]?[0-9]+') THEN TRY_CAST({cell} AS INTEGER) END"
    if column in BOOL_FIELDS:
        return f"CASE WHEN lower({cell}) IN ('true', 'false') THEN lower({cell}) = 'true' END"
    if column in FLOAT_FIELDS:
        return f"TRY_CAST({cell} AS DOUBLE)"
    return cell


def load_batch(connection: duckdb.DuckDBPyConnection, uris: list[str], required: list[str]) -> None:
    """Table `batch`: every CSV row, typed, with its file name, `reported_ts` and `problem` (NULL if valid)."""
    files = ", ".join(f"'{local_path(uri)}'" for uri in uris)
    columns = ", ".join(f"'{name}': 'VARCHAR'" for name in FIELDS)
    typed = [f"{parsed(name)} AS {name}" for name in FIELDS if name != "reported_at"]
    unparseable = " OR ".join(f'("{name}" IS NOT NULL AND {parsed(name)} IS NULL)' for name in TYPES)
    connection.execute(f"""
        CREATE TEMP TABLE raw AS SELECT * FROM read_csv([{files}], header = true, auto_detect = false,
            delim = ',', quote = '"', escape = '"', columns = {{{columns}}}, null_padding = true,
            strict_mode = false, filename = true)""")
    connection.execute(f"""
        CREATE TEMP TABLE batch AS
        WITH typed AS (
            SELECT *, {", ".join(f'"{name}" AS raw_{name}' for name in FIELDS)},
                   try_strptime(regexp_replace(reported_at, 'Z$', '+00'), '%Y-%m-%dT%H:%M:%S%z') AS reported_ts,
                   {unparseable} AS unparseable
            FROM raw)
        SELECT parse_filename(filename) AS source_file, {", ".join(typed)}, reported_at, reported_ts,
               {", ".join(f"raw_{name}" for name in FIELDS)},
               CASE WHEN unparseable THEN 'unparseable row (a value of the wrong type or column count)'
                    WHEN reported_ts IS NULL THEN 'reported_at is not an ISO-8601 UTC time'
                    WHEN {" OR ".join(f"{parsed(c)} IS NULL" for c in required)} THEN 'one of {str(required).replace("'", "''")} is empty'
                    WHEN {" OR ".join(f"{parsed(c)} < 0" for c in INT_FIELDS)} THEN 'negative count' END AS problem
        FROM typed""")
    connection.execute("DROP TABLE raw")


def rejects(connection: duckdb.DuckDBPyConnection) -> dict[str, list[dict[str, Any]]]:
    """Malformed rows by file name, as the Spark runner writes them: reason, the raw line if it did not parse
    (re-serialised as CSV), and the fields that parsed."""
    result: dict[str, list[dict[str, Any]]] = {}
    rows = connection.execute(f"""
        SELECT source_file, problem, {", ".join(FIELDS)}, {", ".join(f"raw_{name}" for name in FIELDS)}
        FROM batch WHERE problem IS NOT NULL""").fetchall()
    for row in rows:
        values, raw = row[2:2 + len(FIELDS)], row[2 + len(FIELDS):]
        line = None
        if row[1].startswith("unparseable"):
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="").writerow(["" if cell is None else cell for cell in raw])
            line = buffer.getvalue()
        result.setdefault(row[0], []).append({"reason": row[1], "line": line, **dict(zip(FIELDS, values, strict=True))})
    return result


def day_files(lake: Lake, dataset: str, days: list[str]) -> list[str]:
    """The Parquet files of `days` in the processed dataset (their folders only: cost flat as the lake grows)."""
    return [str(local_path(lake.uri(f.path))) for day in days
            for f in lake.list(f"processed/{dataset}/day={day}") if f.path.endswith(".parquet")]


def status_relation(files: list[str], columns: list[str]) -> str:
    """SQL reading the processed `files` (day from the folder names, reported_at as an instant; not empty)."""
    listed = ", ".join(f"'{f}'" for f in files)
    selected = ", ".join("reported_at::TIMESTAMPTZ AS reported_at" if c == "reported_at" else c for c in columns)
    return f"(SELECT {selected} FROM read_parquet([{listed}], hive_partitioning = true, " \
           "hive_types = {'day': VARCHAR}))"


def write_parquet(connection: duckdb.DuckDBPyConnection, table: str, folder: Path) -> None:
    """`table` as Parquet in `folder`, one Hive folder per day (`day=YYYY-MM-DD/`), as Spark's partitionBy."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    connection.execute(f"COPY (SELECT * FROM {table} ORDER BY day) TO '{folder}' (FORMAT parquet, PARTITION_BY (day))")


def ingest(context: RunContext, claim: Claim, lake: Lake) -> list[str]:
    """Validate, deduplicate and publish the claimed files with DuckDB; return the local days they touch."""
    check_headers(claim, first_line)
    if not claim.accepted:
        return []
    connection = connect(context.settings.timezone)
    load_batch(connection, claim.uris(), REQUIRED)
    context.log("input", files=len(claim.accepted), partitions=1, runner="duckdb")
    rows_in = connection.execute("SELECT count(*) FROM batch").fetchone()[0]
    found = rejects(connection)
    keep_rejects(claim, found)
    rejected = sum(len(r) for r in found.values())
    columns = ", ".join("reported_ts AS reported_at" if c == "reported_at" else c for c in STATUS_COLUMNS[:-1])
    connection.execute(f"""
        CREATE TEMP TABLE valid AS
        SELECT {columns}, strftime(reported_ts AT TIME ZONE getvariable('velib_timezone'), '%Y-%m-%d') AS day
        FROM batch WHERE problem IS NULL""")
    connection.execute("DROP TABLE batch")
    days = [r[0] for r in connection.execute("SELECT DISTINCT day FROM valid ORDER BY day").fetchall()]
    known = day_files(lake, DATASET, days)
    anti_join = f"ANTI JOIN {status_relation(known, KEY)} AS known USING (station_code, reported_at)" if known else ""
    order = ", ".join(f"{c} DESC NULLS LAST" for c in PREFERENCE)
    connection.execute(f"""
        CREATE TEMP TABLE fresh AS
        SELECT {", ".join(STATUS_COLUMNS)} FROM valid {anti_join}
        QUALIFY row_number() OVER (PARTITION BY station_code, reported_at ORDER BY {order}) = 1""")
    rows_out = connection.execute("SELECT count(*) FROM fresh").fetchone()[0]
    count_rows(context, rows_in, rejected, rows_out, days)
    if rows_out:
        claim.publish(DATASET, lambda uri: write_parquet(connection, "fresh", local_path(uri)))
    connection.close()
    return days


def statistics(context: RunContext, lake: Lake, days: list[str]) -> list[list[dict[str, Any]]]:
    """The three statistics tables of `days` (rows as dicts, in `COLLECTIONS` order) from the processed days."""
    connection = connect(context.settings.timezone)
    files = day_files(lake, DATASET, days)
    if not files:
        return [[], [], []]
    connection.execute(f"CREATE TEMP TABLE status AS SELECT * FROM {status_relation(files, STATUS_COLUMNS)}")
    connection.execute(f"CREATE TEMP TABLE station_daily AS {STATION_SQL.format(status='status')}")
    tables = []
    for query in ("SELECT * FROM station_daily", ZONE_SQL.format(status="status"),
                  EMPTY_SQL.format(station_daily="station_daily")):
        result = connection.execute(query)
        names = [d[0] for d in result.description]
        tables.append([dict(zip(names, row, strict=True)) for row in result.fetchall()])
    connection.close()
    return tables

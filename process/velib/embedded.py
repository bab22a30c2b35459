"""The Velib batch on one node with DuckDB: the same phases and outputs as the Spark runner of `velib_daily`.

Chosen by `velib_daily --runner auto` when the Spark master is local and the lake is on `file://` (one machine:
no JVM to start, no shuffle, about 10× less time than Spark for a day of one-minute snapshots); the cluster
keeps Spark. Same rules as `process.velib.daily` (which owns them): the CSV header check, the malformed-row
reasons, the copy kept among copies of one snapshot identity (`COPY_ORDER`: observed first, then the greatest
descriptive fields, nulls last), the anti-join against the identities of the touched days only, Parquet
partitioned by `day` published through the protocol, and the statistics with the very SQL text of
`process.velib.stats` (DuckDB runs Spark's SQL as is).
`tests/test_velib_daily.py` proves both runners give identical Parquet rows, rejects and MongoDB documents.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cronlake.contracts.velib import STATION, STATUS
from cronlake.core.protocol import Claim, reject
from process.velib.daily import COPY_ORDER, KEY, REQUIRED, TIMES, check_headers, count_rows, keep_rejects
from process.velib.stats import STATION_SQL, ZONE_SQL

if TYPE_CHECKING:
    import duckdb

    from cronlake.core.lake import Lake
    from cronlake.core.runner import RunContext

MEMORY_LIMIT = "1GB"  # the job's whole process stays under 1.5 GB on a day of one-minute snapshots
FIELDS = STATION.names
INT_FIELDS, BOOL_FIELDS, FLOAT_FIELDS = STATION.of_kind("int"), STATION.of_kind("bool"), STATION.of_kind("double")
TYPES = {**dict.fromkeys(INT_FIELDS, "INTEGER"), **dict.fromkeys(BOOL_FIELDS, "BOOLEAN"),
         **dict.fromkeys(FLOAT_FIELDS, "DOUBLE")}
STATUS_COLUMNS = STATUS.column_names


def local_path(uri: str) -> Path:
    """The filesystem path of a `file://` lake URI."""
    return Path(urlsplit(uri).path)


def connect(timezone: str, spill: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB capped at MEMORY_LIMIT (it spills to `spill` beyond), session time zone UTC."""
    import duckdb

    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    connection.execute("SET preserve_insertion_order = false")
    connection.execute(f"SET temp_directory = '{spill}'")
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
    """Table `batch`: every CSV row typed, with `<time>_ts` for each time field and `problem` (NULL if valid); for
    rejected rows their `source_file`, and for rows that did not parse their raw cells (`raw_cells`)."""
    files = ", ".join(f"'{local_path(uri)}'" for uri in uris)
    columns = ", ".join(f"'{name}': 'VARCHAR'" for name in FIELDS)
    typed = ", ".join(f"{parsed(name)} AS {name}" for name in FIELDS if name not in TIMES)
    times = ", ".join(f"{name}, try_strptime(regexp_replace({name}, 'Z$', '+00'), '%Y-%m-%dT%H:%M:%S%z') AS {name}_ts"
                      for name in TIMES)
    time_problems = " ".join(f"WHEN {name}_ts IS NULL THEN '{name} is not an ISO-8601 UTC time'" for name in TIMES)
    unparseable = " OR ".join(f'("{name}" IS NOT NULL AND {parsed(name)} IS NULL)' for name in TYPES)
    required_text = str(required).replace("'", "''")
    connection.execute(f"""
        CREATE TEMP TABLE batch AS
        WITH typed AS (
            SELECT filename, {typed}, {times},
                   {unparseable} AS unparseable, [{", ".join(f'"{name}"' for name in FIELDS)}] AS cells
            FROM read_csv([{files}], header = true, auto_detect = false, delim = ',', quote = '"', escape = '"',
                          columns = {{{columns}}}, null_padding = true, strict_mode = false, filename = true)),
        checked AS (
            SELECT *, CASE WHEN unparseable THEN 'unparseable row (a value of the wrong type or column count)'
                           {time_problems}
                           WHEN {" OR ".join(f"{c} IS NULL" for c in required)} THEN 'one of {required_text} is empty'
                           WHEN {" OR ".join(f"{c} < 0" for c in INT_FIELDS)} THEN 'negative count' END AS problem
            FROM typed)
        SELECT * EXCLUDE (filename, unparseable, cells),
               CASE WHEN problem IS NOT NULL THEN parse_filename(filename) END AS source_file,
               CASE WHEN unparseable THEN cells END AS raw_cells
        FROM checked""")


def rejects(connection: duckdb.DuckDBPyConnection) -> dict[str, list[dict[str, Any]]]:
    """Malformed rows by file name, as the Spark runner writes them: reason, the raw line if it did not parse
    (re-serialised as CSV), and the fields that parsed."""
    result: dict[str, list[dict[str, Any]]] = {}
    rows = connection.execute(f"""
        SELECT source_file, problem, raw_cells, {", ".join(FIELDS)} FROM batch WHERE problem IS NOT NULL""")
    for source_file, problem, cells, *values in rows.fetchall():
        line = None
        if cells is not None:
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="").writerow(["" if cell is None else cell for cell in cells])
            line = buffer.getvalue()
        result.setdefault(source_file, []).append(
            reject(problem, dict(zip(FIELDS, values, strict=True)), file=source_file, line=line))
    return result


def day_files(lake: Lake, dataset: str, days: list[str]) -> list[str]:
    """The Parquet files of `days` in the processed dataset (their folders only: cost flat as the lake grows)."""
    return [str(local_path(lake.uri(f.path))) for day in days
            for f in lake.list(f"processed/{dataset}/day={day}") if f.path.endswith(".parquet")]


def status_relation(files: list[str], columns: list[str]) -> str:
    """SQL reading the processed `files` (day from the folder names, the times as instants; not empty)."""
    listed = ", ".join(f"'{f}'" for f in files)
    selected = ", ".join(f"{c}::TIMESTAMPTZ AS {c}" if c in TIMES else c for c in columns)
    return f"(SELECT {selected} FROM read_parquet([{listed}], hive_partitioning = true, " \
           "hive_types = {'day': VARCHAR}))"


def write_parquet(connection: duckdb.DuckDBPyConnection, table: str, folder: Path) -> None:
    """`table` as Parquet in `folder`, one Hive folder per day (`day=YYYY-MM-DD/`), as Spark's partitionBy."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    connection.execute(f"COPY {table} TO '{folder}' (FORMAT parquet, PARTITION_BY (day))")


class EmbeddedRun:
    """One run of the DuckDB runner: one in-memory database from the claim to the statistics. The statistics of
    a touched day come from its files as they were before this run plus this run's new rows, still in memory
    (the same rows the day's folder holds after the publish, without reading them back)."""

    def __init__(self, context: RunContext, lake: Lake):
        self.context, self.lake = context, lake
        self.connection = connect(context.settings.timezone, context.settings.state_path / "duckdb")
        self.earlier: dict[str, list[str]] = {}  # touched day → its files before this run's publish

    def ingest(self, claim: Claim) -> list[str]:
        """Validate, deduplicate and publish the claimed files; return the local days they touch."""
        connection, context = self.connection, self.context
        check_headers(claim, first_line)
        if not claim.accepted:
            return []
        load_batch(connection, claim.uris(), REQUIRED)
        context.log("input", files=len(claim.accepted), partitions=1, runner="duckdb")
        rows_in = connection.execute("SELECT count(*) FROM batch").fetchone()[0]
        found = rejects(connection)
        keep_rejects(claim, found)
        columns = ", ".join(f"{c}_ts AS {c}" if c in TIMES else c for c in STATUS_COLUMNS[:-1])
        connection.execute(f"""
            CREATE TEMP VIEW valid AS
            SELECT {columns}, strftime(observed_at_ts AT TIME ZONE getvariable('velib_timezone'), '%Y-%m-%d') AS day
            FROM batch WHERE problem IS NULL""")
        days = [r[0] for r in connection.execute("SELECT DISTINCT day FROM valid ORDER BY day").fetchall()]
        self.earlier = {day: day_files(self.lake, STATUS.name, [day]) for day in days}
        known = [file for files in self.earlier.values() for file in files]
        anti_join = f"ANTI JOIN {status_relation(known, KEY)} AS known USING ({', '.join(KEY)})" if known else ""
        order = ", ".join(f"{c} {direction} NULLS LAST" for c, direction in COPY_ORDER)
        connection.execute(f"""
            CREATE TEMP TABLE fresh AS
            SELECT {", ".join(STATUS_COLUMNS)} FROM valid {anti_join}
            QUALIFY row_number() OVER (PARTITION BY {', '.join(KEY)} ORDER BY {order}) = 1""")
        connection.execute("DROP VIEW valid")
        connection.execute("DROP TABLE batch")
        rows_out = connection.execute("SELECT count(*) FROM fresh").fetchone()[0]
        count_rows(context, rows_in, sum(len(r) for r in found.values()), rows_out, days)
        if rows_out:
            claim.publish(STATUS.name, lambda uri: write_parquet(connection, "fresh", local_path(uri)))
        return days

    def statistics(self, days: list[str]) -> list[list[dict[str, Any]]]:
        """The statistics tables of `days` (rows as dicts, in `daily.TABLES` order)."""
        connection = self.connection
        files = [file for day in days
                 for file in self.earlier.get(day, day_files(self.lake, STATUS.name, [day]))]
        parts = [f"SELECT * FROM {status_relation(files, STATUS_COLUMNS)}"] if files else []
        if self.earlier:
            listed = ", ".join(f"'{day}'" for day in days)
            parts.append(f"SELECT * FROM fresh WHERE day IN ({listed})")
        if not parts:
            return [[], []]
        connection.execute(f"CREATE OR REPLACE TEMP VIEW status AS {' UNION ALL '.join(parts)}")
        connection.execute(f"CREATE OR REPLACE TEMP TABLE station_daily AS {STATION_SQL.format(status='status')}")
        tables = []
        for query in ("SELECT * FROM station_daily", ZONE_SQL.format(status="status")):
            result = connection.execute(query)
            names = [d[0] for d in result.description]
            tables.append([dict(zip(names, row, strict=True)) for row in result.fetchall()])
        return tables

    def close(self) -> None:
        self.connection.close()

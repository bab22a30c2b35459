"""Daily Velib statistics, computed two equivalent ways: the DataFrame API and Spark SQL over temp views.

Input: rows of `processed/velib_status` (one per distinct snapshot identity, with `day`, the local date of
`observed_at`). A sample is a distinct snapshot: each change of counts or new report of a station counts once,
an unchanged re-serve does not.
Output, per engine, two DataFrames with the columns of the MongoDB collections they fill, in the same order
(`velib_station_daily` and `velib_zone_daily` in `cronlake.contracts.velib`):

- station daily (station_code, day): samples, bikes avg/min/max, mechanical/ebike/docks averages, docks
  min/max, and how many snapshots had no bike (`zero_bike_samples`) or no free dock (`zero_dock_samples`);
  name, zone and capacity are those of the station's last snapshot of the day (by observed_at).
- zone daily (zone, day): stations, samples, averages over every snapshot of the zone's stations that day,
  fill_ratio = avg bikes / avg capacity (null when every snapshot of the zone that day had capacity 0, e.g.
  stations being installed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from cronlake.contracts.velib import STATION_DAILY, ZONE_DAILY

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

ENGINES = ("dataframe", "sql")


class DailyStats(NamedTuple):
    station_daily: DataFrame
    zone_daily: DataFrame


def dataframe_stats(status: DataFrame) -> DailyStats:
    """The two tables with the DataFrame API."""
    from pyspark.sql import functions as F

    def last(column: str):
        return F.max_by(column, "observed_at").alias(column)

    def zeros(column: str, alias: str):
        return F.sum((F.col(column) == 0).cast("long")).alias(alias)

    station = (
        status.groupBy("station_code", "day")
        .agg(last("name"), last("zone"), last("capacity"), F.count("*").alias("samples"),
             F.avg("bikes").alias("avg_bikes"), F.min("bikes").alias("min_bikes"), F.max("bikes").alias("max_bikes"),
             F.avg("mechanical").alias("avg_mechanical"), F.avg("ebike").alias("avg_ebike"),
             F.avg("docks_free").alias("avg_docks_free"), F.min("docks_free").alias("min_docks_free"),
             F.max("docks_free").alias("max_docks_free"), zeros("bikes", "zero_bike_samples"),
             zeros("docks_free", "zero_dock_samples"))
        .select(*STATION_DAILY.fields)
    )
    zone = (
        status.groupBy("zone", "day")
        .agg(F.countDistinct("station_code").alias("stations"), F.count("*").alias("samples"),
             F.avg("bikes").alias("avg_bikes"), F.avg("mechanical").alias("avg_mechanical"),
             F.avg("ebike").alias("avg_ebike"), F.avg("docks_free").alias("avg_docks_free"),
             F.when(F.avg("capacity") > 0, F.avg("bikes") / F.avg("capacity")).alias("fill_ratio"))
        .select(*ZONE_DAILY.fields)
    )
    return DailyStats(station, zone)


STATION_SQL = """
SELECT station_code, day,
       max_by(name, observed_at) AS name, max_by(zone, observed_at) AS zone,
       max_by(capacity, observed_at) AS capacity, count(*) AS samples,
       avg(bikes) AS avg_bikes, min(bikes) AS min_bikes, max(bikes) AS max_bikes,
       avg(mechanical) AS avg_mechanical, avg(ebike) AS avg_ebike,
       avg(docks_free) AS avg_docks_free, min(docks_free) AS min_docks_free, max(docks_free) AS max_docks_free,
       sum(CAST(bikes = 0 AS BIGINT)) AS zero_bike_samples,
       sum(CAST(docks_free = 0 AS BIGINT)) AS zero_dock_samples
FROM {status}
GROUP BY station_code, day
"""

ZONE_SQL = """
SELECT zone, day, count(DISTINCT station_code) AS stations, count(*) AS samples,
       avg(bikes) AS avg_bikes, avg(mechanical) AS avg_mechanical, avg(ebike) AS avg_ebike,
       avg(docks_free) AS avg_docks_free,
       CASE WHEN avg(capacity) > 0 THEN avg(bikes) / avg(capacity) END AS fill_ratio
FROM {status}
GROUP BY zone, day
"""

def sql_stats(status: DataFrame) -> DailyStats:
    """The two tables with Spark SQL over a temp view (its name is unique to this input)."""
    view = f"velib_status_{id(status):x}"
    status.createOrReplaceTempView(view)
    spark = status.sparkSession
    return DailyStats(spark.sql(STATION_SQL.format(status=view)), spark.sql(ZONE_SQL.format(status=view)))


def daily_stats(status: DataFrame, engine: str = "dataframe") -> DailyStats:
    """The daily statistics of `status` with the chosen engine ('dataframe' or 'sql')."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {ENGINES}")
    return dataframe_stats(status) if engine == "dataframe" else sql_stats(status)

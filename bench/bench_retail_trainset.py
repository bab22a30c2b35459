"""Benchmark the training-set features (`process.retail.trainset.training_rows`, Spark) against DuckDB computing
the same features on the same events, in one run.

Data: resampled real sessions shifted in time. The only real REES46 slice (2019-10-01 00:00-02:28, 5,019 events)
is copied `--copies` times; copy k shifts every event by k x 150 minutes and suffixes its session and user ids,
so the scaled set keeps real session shapes, prices and brands (it is not new behaviour). Cutoffs every
`--every-minutes` over the whole span, lookback 1h, horizon 30m, session grain. Both engines read the same
Parquet file; the row counts and the sum of a few features must agree. Medians of `--rounds`.

    python bench/bench_retail_trainset.py [--copies 20] [--every-minutes 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SLICE = REPO.parent / "shared" / "data" / "ecommerce" / "rees46_events_2019-10-01_head.csv"
START = datetime(2019, 10, 1, tzinfo=UTC)
SPAN = timedelta(minutes=150)
LOOKBACK, HORIZON = timedelta(hours=1), timedelta(minutes=30)

DUCKDB_SQL = """
with cut as (select unnest($cutoffs::timestamptz[]) as cutoff),
past as (
  select e.user_session as entity_id, c.cutoff, e.* exclude (user_session)
  from events e, cut c
  where e.event_time >= greatest($start::timestamptz, c.cutoff - interval 1 hour) and e.event_time < c.cutoff
    and e.event_type <> 'purchase'),
feat as (
  select cutoff, entity_id, count(*) as events, count(*) filter (event_type = 'view') as views,
    count(*) filter (event_type = 'cart') as carts, 0 as purchases,
    count(distinct product_id) as distinct_products, count(distinct category_id) as distinct_categories,
    round(coalesce(sum(price) filter (event_type = 'cart'), 0), 2) as cart_value, round(avg(price), 4) as price_mean,
    min(price) as price_min, max(price) as price_max, round(coalesce(stddev_pop(price), 0), 4) as price_std,
    epoch(cutoff) - epoch(max(event_time)) as seconds_since_last_event,
    epoch(cutoff) - epoch(min(event_time)) as seconds_since_first_event, hour(cutoff) as cutoff_hour
  from past group by cutoff, entity_id),
brand as (select cutoff, entity_id, max(n) as top from (select cutoff, entity_id, brand, count(*) n from past
          where brand is not null group by all) group by all),
cat as (select cutoff, entity_id, max(n) as top from (select cutoff, entity_id, category_code, count(*) n from past
        where category_code is not null group by all) group by all),
buyers as (select distinct c.cutoff, e.user_session as entity_id from events e, cut c
           where e.event_type = 'purchase' and e.event_time > c.cutoff
             and e.event_time <= c.cutoff + interval 30 minute)
select f.*, round(coalesce(b.top / f.events, 0), 4) as top_brand_share,
  round(coalesce(k.top / f.events, 0), 4) as top_category_code_share,
  (y.entity_id is not null)::int as label
from feat f left join brand b using (cutoff, entity_id) left join cat k using (cutoff, entity_id)
  left join buyers y using (cutoff, entity_id)
order by cutoff, entity_id
"""


def scaled_events(copies: int) -> pa.Table:
    raw = pacsv.read_csv(SLICE, convert_options=pacsv.ConvertOptions(column_types={
        "category_id": pa.string(), "product_id": pa.int64(), "user_id": pa.int64(), "price": pa.float64()}))
    times = pc.strptime(pc.utf8_replace_slice(raw["event_time"], 19, 23, ""), "%Y-%m-%d %H:%M:%S", "us").cast(
        pa.timestamp("us", tz="UTC"))
    raw = raw.set_column(0, "event_time", times).filter(pc.greater(raw["price"], 0))
    parts = []
    for k in range(copies):
        shift = pa.scalar(int(SPAN.total_seconds() * 1e6) * k, pa.duration("us"))
        parts.append(raw.set_column(0, "event_time", pc.add(raw["event_time"], shift))
                     .set_column(8, "user_session", pc.binary_join_element_wise(raw["user_session"], f"-{k}", ""))
                     .set_column(7, "user_id", pc.add(raw["user_id"], 10**10 * k)))
    return pa.concat_tables(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--every-minutes", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from pyspark.sql import SparkSession

    from process.retail.trainset import training_rows

    events = scaled_events(args.copies)
    end = START + SPAN * args.copies
    step = timedelta(minutes=args.every_minutes)
    cutoffs = [START + step * i for i in range(1, (end - START) // step + 1)]
    folder = Path(tempfile.mkdtemp(prefix="bench-trainset-"))
    pq.write_table(events, folder / "events.parquet")
    spark = (SparkSession.builder.master("local[2]").config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.shuffle.partitions", "4").config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    frame = spark.read.parquet(str(folder / "events.parquet")).cache()
    frame.count()

    def run_spark() -> tuple[int, float]:
        rows = training_rows(frame, cutoffs, START, LOOKBACK, HORIZON, "session").orderBy("cutoff", "entity_id")
        got = rows.agg({"views": "sum", "label": "sum", "*": "count"}).first()
        return int(got["count(1)"]), float(got["sum(views)"]) + float(got["sum(label)"])

    def run_duckdb() -> tuple[int, float]:
        con = duckdb.connect()
        con.execute("set TimeZone = 'UTC'")
        con.execute("create table events as select * from read_parquet(?)", [str(folder / "events.parquet")])
        out = con.execute(DUCKDB_SQL, {"cutoffs": cutoffs, "start": START}).to_arrow_table()
        return out.num_rows, float(pc.sum(out["views"]).as_py()) + float(pc.sum(out["label"]).as_py())

    results = {}
    for name, engine in (("spark training_rows", run_spark), ("duckdb baseline", run_duckdb)):
        seconds, outcome = [], None
        for _ in range(args.rounds):
            began = time.perf_counter()
            outcome = engine()
            seconds.append(time.perf_counter() - began)
        results[name] = (statistics.median(seconds), outcome)
    spark.stop()
    (spark_rows, spark_check), (duck_rows, duck_check) = (results[n][1] for n in results)
    print(f"resampled real sessions shifted in time: {args.copies} copies of the REES46 2019-10-01 slice, "
          f"{events.num_rows:,} events, {len(cutoffs)} cutoffs every {args.every_minutes} min")
    print(f"same output: rows {spark_rows} vs {duck_rows}, checksum {spark_check} vs {duck_check}")
    baseline = results["duckdb baseline"][0]
    print(f"{'engine':<22}{'median s':>10}{'events/s':>14}{'rows out':>10}{'vs duckdb':>11}")
    for name, (median, (rows, _)) in results.items():
        print(f"{name:<22}{median:>10.2f}{events.num_rows / median:>14,.0f}{rows:>10}{median / baseline:>10.2f}x")
    return 0 if (spark_rows, spark_check) == (duck_rows, duck_check) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark `retail_social` on the real tweet file (1,716 lines) and on a scaled copy, against a plain-Python +
DuckDB baseline doing the same parsing and aggregation, in one run; ratios printed as a table.

Scaled data, labelled so: **resampled real rows** — real tweet lines drawn with replacement (seed 13) from the real
file, each given a new `id` / `id_str` (so they are distinct posts; their text, users, times are the real ones),
written as gzip JSON-lines files of 5,000 tweets. The real file's two duplicate lines stay in the real row only.

The job runs as a user runs it (`cronlake.ops.run retail_social`, its own process: Spark start, claim, Delta
version, quality rules, MongoDB upserts and archive are counted) against a throwaway embedded stack. The baseline,
in this process: `json.loads` each line; the same created_at parse, extended text, the five HTML entities, brand
match (`@handle` word boundary or user mention, own/retweeted/quoted), hashtags; drop duplicate ids; then DuckDB
writes the posts as Parquet partitioned by day and computes the brand mentions per 10 minutes and per hour and the
daily summary (posts, retweets, languages, top hashtags). Both sides' posts and mention-window counts are printed.

    python bench/bench_retail_social.py [--copies 12] [--master local[2]]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
from _common import DATA, machine_line, run_job, throwaway_stack

from cronlake.contracts.retail_social import DAY_SUMMARY, MENTIONS, TRACKED_HANDLES
from cronlake.core import settings as settings_module
from cronlake.core.mongo import data_db
from process.retail.social import HTML_ENTITIES, TOP_HASHTAGS

TWEETS = DATA / "social" / "tweets_us_retailers_2016-11-30_1351-1433.jsonl.gz"
PER_FILE = 5_000
NEW_IDS_FROM = 10**18  # above every real tweet id of 2016


def resampled(lines: list[str], count: int, seed: int = 13) -> list[str]:
    """`count` real tweet lines drawn with replacement, each with a new id."""
    tweets = [json.loads(line) for line in lines if line.strip()]
    drawn = random.Random(seed).choices(tweets, k=count)
    return [json.dumps({**tweet, "id": NEW_IDS_FROM + n, "id_str": str(NEW_IDS_FROM + n)})
            for n, tweet in enumerate(drawn)]


def write_files(folder: Path, lines: list[str], stem: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for part, start in enumerate(range(0, len(lines), PER_FILE)):
        body = "\n".join(lines[start:start + PER_FILE]) + "\n"
        (folder / f"{stem}_{part:03d}.jsonl.gz").write_bytes(gzip.compress(body.encode("utf-8")))


def full_text(tweet: dict | None) -> str:
    if not tweet:
        return ""
    return (tweet.get("extended_tweet") or {}).get("full_text") or tweet.get("text") or ""


def unescape(text: str) -> str:
    for entity, character in HTML_ENTITIES:
        text = text.replace(entity, character)
    return text


def post(tweet: dict, patterns: dict[str, re.Pattern]) -> dict | None:
    """One tweet as a row of the posts dataset (the columns the aggregation needs), None without a valid date."""
    try:
        created = datetime.strptime(tweet["created_at"].split(" ", 1)[1], "%b %d %H:%M:%S %z %Y").astimezone(UTC)
    except (KeyError, ValueError, IndexError, AttributeError):
        return None
    parts = [p for p in (tweet, tweet.get("retweeted_status"), tweet.get("quoted_status")) if p]
    searched = " ".join(full_text(p) for p in parts).lower()
    mentioned = {m["screen_name"].lower() for p in parts for m in (p.get("entities") or {}).get("user_mentions") or []}
    hashtags = {h["text"].lower() for h in (tweet.get("entities") or {}).get("hashtags") or []}
    return {
        "tweet_id": tweet["id"], "created_at": created, "text": unescape(full_text(tweet)),
        "lang": tweet.get("lang") or "und", "hashtags": ",".join(sorted(hashtags)),
        "mentions": ",".join(sorted(mentioned)),
        "brands": ",".join(h for h, p in patterns.items() if p.search(searched) or h in mentioned),
        "is_retweet": tweet.get("retweeted_status") is not None, "day": created.strftime("%Y-%m-%d"),
    }


def baseline(landing: Path, out: Path) -> tuple[float, dict[str, int]]:
    """Parse and deduplicate in plain Python, then Parquet and the serving aggregates with DuckDB."""
    started = time.monotonic()
    patterns = {h: re.compile(rf"@{h}\b") for h in TRACKED_HANDLES}
    rows: dict[int, dict] = {}
    for path in sorted(landing.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                try:
                    tweet = json.loads(line)
                except json.JSONDecodeError:
                    continue
                row = post(tweet, patterns) if isinstance(tweet, dict) and tweet.get("id") else None
                if row is not None:
                    rows.setdefault(row["tweet_id"], row)
    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")
    posts = pa.Table.from_pylist(list(rows.values()))  # noqa: F841 - read by DuckDB by name
    db.execute(f"COPY posts TO '{out}' (FORMAT parquet, PARTITION_BY (day))")
    windows = 0
    for width in ("10 minutes", "1 hour"):
        windows += len(db.execute(f"""SELECT brand, time_bucket(INTERVAL '{width}', created_at), count(*)
            FROM (SELECT unnest(string_split(brands, ',')) AS brand, created_at FROM posts WHERE brands <> '')
            GROUP BY ALL""").fetchall())
    db.execute("SELECT day, count(*), sum(is_retweet::INT) FROM posts GROUP BY day").fetchall()
    db.execute("SELECT day, lang, count(*) FROM posts GROUP BY ALL").fetchall()
    db.execute(f"""SELECT day, tag, n FROM (SELECT day, tag, n, row_number() OVER (PARTITION BY day
        ORDER BY n DESC, tag) AS rank FROM (SELECT day, tag, count(*) AS n FROM (SELECT day,
        unnest(string_split(hashtags, ',')) AS tag FROM posts WHERE hashtags <> '') GROUP BY ALL))
        WHERE rank <= {TOP_HASHTAGS}""").fetchall()
    return time.monotonic() - started, {"posts": len(rows), "windows": windows}


def job(work: Path, env: dict[str, str], label: str, lines: list[str]) -> tuple[float, dict[str, int]]:
    """Land the lines in a lake and a MongoDB database of their own, run the job, read back what it served."""
    env = {**env, "CRONLAKE_LAKE_ROOT": (work / f"lake-{label}").as_uri(), "CRONLAKE_MONGO_DB": f"bench_{label}",
           "CRONLAKE_MONGO_OPS_DB": f"bench_{label}_ops", "CRONLAKE_STATE_DIR": str(work / f"state-{label}")}
    write_files(work / f"lake-{label}" / "landing" / "social", lines, label)
    seconds = run_job("retail_social", env)
    db = data_db(settings_module.load(env))
    posts = sum(d["posts"] for d in db[DAY_SUMMARY.name].find({}, {"posts": 1}))
    return seconds, {"posts": posts, "windows": db[MENTIONS.name].count_documents({})}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_retail_social", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=12, help="scaled size in real-file sizes (default 12)")
    parser.add_argument("--master", default="local[2]", help="Spark master (default local[2])")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    real = gzip.decompress(TWEETS.read_bytes()).decode("utf-8").splitlines()
    inputs = (("real", "real tweet file", real),
              ("scaled", f"resampled real rows x{args.copies}", resampled(real, len(real) * args.copies)))
    results = []
    with throwaway_stack("bench-retail-social-", args.master) as (work, env):
        for label, title, lines in inputs:
            write_files(work / f"baseline-{label}", lines, label)
            python_seconds, want = baseline(work / f"baseline-{label}", work / f"out-{label}")
            job_seconds, got = job(work, env, label, lines)
            results.append((title, len(lines), job_seconds, python_seconds, got, want))
        print(machine_line(args.master))
    header = (f"{'input':<30} {'lines':>7} {'job s':>7} {'Python+DuckDB s':>16} {'x baseline':>10}  posts job/base"
              "  mention windows job/base")
    print(header + "\n" + "-" * len(header))
    for title, lines, job_seconds, python_seconds, got, want in results:
        print(f"{title:<30} {lines:>7} {job_seconds:>7.1f} {python_seconds:>16.2f} "
              f"{job_seconds / python_seconds:>10.1f}  {got['posts']}/{want['posts']}  "
              f"{got['windows']}/{want['windows']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""retail_social on real tweets: a JSON-lines slice of the retailer stream (with its two duplicate lines, ten
truncated tweets and one malformed line appended) and the 26-tweet JSON array sample. Expectations are computed
here from the files with the json module alone."""

from __future__ import annotations

import gzip
import html
import json
import re
import shutil
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from conftest import FIXTURES

from cronlake.contracts.retail_social import DAY_SUMMARY, MENTIONS, POSTS, TRACKED_HANDLES
from cronlake.core import catalog, settings
from cronlake.core.lake import open_lake
from cronlake.core.mongo import data_db
from cronlake.core.runner import RunContext
from process.retail import social

SLICE = FIXTURES / "retail_social" / "tweets_slice.jsonl.gz"
SAMPLE = FIXTURES / "retail_social" / "tweets_sample.json"


def slice_lines() -> list[str]:
    with gzip.open(SLICE, "rt", encoding="utf-8") as handle:
        return [line for line in handle if line.strip()]


def parsed_slice() -> tuple[list[dict], int]:
    tweets, malformed = [], 0
    for line in slice_lines():
        try:
            tweets.append(json.loads(line))
        except json.JSONDecodeError:
            malformed += 1
    return tweets, malformed


def text_of(tweet: dict | None) -> str:
    if not tweet:
        return ""
    return (tweet.get("extended_tweet") or {}).get("full_text") or tweet["text"]


def brands_of(tweet: dict) -> set[str]:
    parts = [tweet, tweet.get("retweeted_status"), tweet.get("quoted_status")]
    searched = " ".join(text_of(p) for p in parts).lower()
    mentioned = {m["screen_name"].lower() for p in parts if p for m in p["entities"]["user_mentions"]}
    return {h for h in TRACKED_HANDLES if re.search(rf"@{h}\b", searched) or h in mentioned}


def run_job(env: dict[str, str], spark: object) -> RunContext:
    context = RunContext(job="retail_social", run_id=f"retail_social-{uuid.uuid4().hex[:8]}",
                         settings=settings.load(dict(env)), needs=("lake", "spark"), _spark=spark)
    social.run(context, social.build_parser().parse_args([]))
    return context


def land(env: dict[str, str], source: Path, name: str) -> None:
    landing = Path(env["CRONLAKE_LAKE_ROOT"].removeprefix("file://")) / "landing" / "social"
    landing.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, landing / name)


def test_tweets_parsed_deduplicated_and_served(cronlake_env: dict[str, str], spark: object) -> None:
    env = cronlake_env
    land(env, SLICE, SLICE.name)
    land(env, SAMPLE, SAMPLE.name)
    context = run_job(env, spark)

    tweets, malformed = parsed_slice()
    sample = json.loads(SAMPLE.read_text())
    by_id = {t["id"]: t for t in tweets}
    assert len(tweets) - len(by_id) == 2 and malformed == 1, "the fixture keeps its duplicates and bad line"
    lake = open_lake(settings.load(dict(env)))
    rows = {r["tweet_id"]: r for r in POSTS.read_arrow(lake).to_pylist()}
    assert set(rows) == set(by_id) | {t["id"] for t in sample}

    truncated = [t for t in by_id.values() if t.get("truncated")]
    assert truncated
    for tweet in truncated:
        assert rows[tweet["id"]]["text"] == html.unescape(tweet["extended_tweet"]["full_text"])
    for tweet in by_id.values():
        row = rows[tweet["id"]]
        assert row["created_at"] == datetime.strptime(tweet["created_at"], "%a %b %d %H:%M:%S %z %Y")
        assert set(filter(None, row["brands"].split(","))) == brands_of(tweet)
        assert row["lang"] == tweet["lang"] and row["is_retweet"] == ("retweeted_status" in tweet)
    assert {rows[t["id"]]["lang"] for t in sample} == {"und"}
    assert rows[sample[0]["id"]]["created_at"] == datetime(2021, 4, 24, 20, 39, 39, tzinfo=UTC)

    reject_file = (Path(env["CRONLAKE_LAKE_ROOT"].removeprefix("file://")) / "quarantine" / "social"
                   / f"{SLICE.name}.retail_social.rejects.jsonl")
    assert len(reject_file.read_text().splitlines()) == malformed

    db = data_db(settings.load(dict(env)))
    expected = Counter((b, datetime.strptime(t["created_at"], "%a %b %d %H:%M:%S %z %Y").strftime("%Y-%m-%dT%H:00:00Z"))
                       for t in by_id.values() for b in brands_of(t))
    served = {(d["brand"], d["window_start"]): d["mentions"]
              for d in db[MENTIONS.name].find({"granularity": "hour"})}
    assert served == dict(expected)
    assert all(d["lineage_run"] == context.run_id for d in db[MENTIONS.name].find())
    day = db[DAY_SUMMARY.name].find_one({"day": "2016-11-30"})
    assert day["posts"] == len(by_id)
    assert day["retweets"] == sum("retweeted_status" in t for t in by_id.values())
    assert day["languages"] == dict(Counter(t["lang"] for t in by_id.values()))

    land(env, SLICE, "again_" + SLICE.name)
    run_job(env, spark)
    assert POSTS.read_arrow(lake).num_rows == len(rows), "a file landed twice adds nothing"
    assert [v["version"] for v in catalog.versions(settings.load(dict(env)), POSTS.name)] == [0]

"""Social posts of the e-commerce lake: tweets mentioning US retailers, their processed dataset and serving
collections."""

from __future__ import annotations

from cronlake.core import quality as Q
from cronlake.core.contracts import Collection, Dataset, Field

# The track list the stream was collected with (data README), without the "@".
TRACKED_HANDLES = (
    "walmart", "costco", "kroger", "homedepot", "walgreens", "target", "amazon", "cvs_extra", "lowes", "bestbuy",
    "safeway", "sears", "publix", "tjmaxx", "macys", "riteaid", "apple", "kohls", "dollargeneral", "gap", "meijer",
    "wholefoods", "nordstrom", "toysrus", "jcpenny", "bedbathbeyond", "staples", "ross_stores",
)

# One row per tweet id. List columns (hashtags, mentions, brands) are lower-case, comma-separated, sorted.
POSTS = Dataset(
    "retail_social_posts", (
        Field("tweet_id", "long"), Field("created_at", "timestamp"), Field("text"), Field("lang"),
        Field("hashtags"), Field("mentions"), Field("brands"), Field("is_retweet", "bool"),
        Field("is_quote", "bool"), Field("is_reply", "bool"), Field("user_screen_name", optional=True),
        Field("user_followers", "long", optional=True), Field("source_app", optional=True), Field("source_file"),
        Field("day"),
    ),
    produced_by="retail_social", partition_by=("day",), versioned=True, key=("tweet_id",),
    owner="shop-data@team", tags=("social", "twitter", "retail"),
    description="Tweets mentioning US retailers: full text (extended when truncated, HTML unescaped), hashtags, "
                "brands mentioned, language and retweet/quote/reply flags; one row per tweet id.",
    quality=(
        Q.not_null("tweet_id", "created_at", "text", "lang"),
        Q.unique("tweet_id"),
        Q.in_range("user_followers", minimum=0),
    ),
)

MENTIONS = Collection(
    "retail_social_mentions", key=("brand", "granularity", "window_start"), produced_by="retail_social",
    id_order=("brand", "granularity", "window_start"), indexes=(("granularity", "window_start"),),
    fields=("brand", "granularity", "window_start", "mentions", "lineage_run"),
)

DAY_SUMMARY = Collection(
    "retail_social_daily", key=("platform", "day"), produced_by="retail_social",
    fields=("platform", "day", "posts", "retweets", "retweet_share", "languages", "top_hashtags", "lineage_run"),
)

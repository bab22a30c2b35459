"""The ad campaign stream of the e-commerce lake: the Facebook ad-conversion table (KAG) replayed row by row as
JSON events, its topic setting, the event record, the versioned events dataset and the campaign performance
collection (see docs/retail-social-ads.md).

The source has no time column: an event's time is the moment the replay sent it (`replayed_at`), and every event
says so (`timestamp_origin` = "replay"); `source_file` and `source_row` (the 1-based data row of the file) point
back to the row it came from.
"""

from __future__ import annotations

from cronlake.core import quality as Q
from cronlake.core.contracts import Collection, Dataset, Field, RecordType
from cronlake.core.settings import Settings, check_topic_name

DEFAULT_TOPIC = "ecommerce.ad_campaigns"
SOURCE = "ads"
TIMESTAMP_ORIGIN = "replay"
KEY = "ad_id"  # the event key, and the CSV column it comes from
AGES = ("30-34", "35-39", "40-44", "45-49")
GENDERS = ("M", "F")

# CSV header of the KAG file → event field (the file's header carries a UTF-8 BOM, stripped when read).
CSV_COLUMNS = {
    "ad_id": "ad_id", "xyz_campaign_id": "xyz_campaign_id", "fb_campaign_id": "fb_campaign_id", "age": "age",
    "gender": "gender", "interest": "interest", "Impressions": "impressions", "Clicks": "clicks", "Spent": "spent",
    "Total_Conversion": "total_conversion", "Approved_Conversion": "approved_conversion",
}
MEASURES = ("impressions", "clicks", "spent", "total_conversion", "approved_conversion")

# One replayed ad row, as a JSON object on the topic and a JSON line in landing/ads/.
AD_EVENT = RecordType("retail_ad_event", (
    Field("ad_id", "long"), Field("xyz_campaign_id", "long"), Field("fb_campaign_id", "long"),
    Field("age", non_empty=True), Field("gender", non_empty=True), Field("interest", "int", minimum=0),
    Field("impressions", "long", minimum=0), Field("clicks", "long", minimum=0), Field("spent", "double", minimum=0),
    Field("total_conversion", "long", minimum=0), Field("approved_conversion", "long", minimum=0),
    Field("source_file", non_empty=True), Field("source_row", "int", minimum=1),
    Field("replayed_at", "timestamp"), Field("timestamp_origin", non_empty=True),
))

# One row per ad: the first event of an ad id is kept, later replays of it add nothing. `spent` is rounded to
# cents (the source carries float noise); `conversions_without_clicks` flags the upstream inconsistency of
# conversions reported for an ad with no click.
EVENTS = Dataset(
    "retail_ad_events", (
        Field("ad_id", "long"), Field("xyz_campaign_id", "long"), Field("fb_campaign_id", "long"), Field("age"),
        Field("gender"), Field("interest", "int"), Field("impressions", "long"), Field("clicks", "long"),
        Field("spent", "double"), Field("total_conversion", "long"), Field("approved_conversion", "long"),
        Field("conversions_without_clicks", "bool"), Field("source_file"), Field("source_row", "int"),
        Field("replayed_at", "timestamp"), Field("timestamp_origin"), Field("landing_file"), Field("replay_day"),
    ),
    produced_by="retail_ads", partition_by=("replay_day",), versioned=True, key=(KEY,),
    owner="shop-data@team", tags=("ads", "facebook", "campaigns", "kag", "retail"),
    description="Facebook ad campaign results, one row per ad (KAG conversion data, replayed as a JSON stream: "
                "replayed_at is the replay time, the source has no timestamps); spent rounded to cents.",
    quality=(
        Q.not_null("ad_id", "xyz_campaign_id", "fb_campaign_id", "age", "gender", "interest", "replayed_at"),
        Q.unique("ad_id"),
        Q.accepted_values("age", AGES),
        Q.accepted_values("gender", GENDERS),
        Q.accepted_values("timestamp_origin", (TIMESTAMP_ORIGIN,)),
        Q.at_most("clicks", "impressions"),
        Q.at_most("approved_conversion", "total_conversion"),
        Q.fresh("replayed_at", max_age_hours=48, severity="warn"),
    ),
)

# Campaign performance: one document per campaign filter ("all" or an xyz_campaign_id), dimension and value;
# dimension "total" (value "all") holds a filter's totals, "campaign" (under "all" only) one row per campaign,
# "age" / "gender" / "interest" the breakdowns. Rates are None when their denominator is 0.
PERFORMANCE = Collection(
    "retail_ad_performance", key=("campaign", "dimension", "value"), produced_by="retail_ads",
    indexes=(("campaign", "dimension"),),
    fields=("campaign", "dimension", "value", "ads", "impressions", "clicks", "spent", "total_conversion",
            "approved_conversion", "ctr", "cpc", "conversion_rate", "approval_rate", "cost_per_conversion",
            "cost_per_approved", "zero_click_ads", "zero_click_conversions", "last_replayed_at", "lineage_run"),
)
DIMENSIONS = ("campaign", "age", "gender", "interest")
ALL = "all"


def topic(settings: Settings) -> str:
    """`CRONLAKE_ADS_TOPIC`: the Kafka topic of replayed ad events, keyed by ad id."""
    return settings.get("CRONLAKE_ADS_TOPIC", DEFAULT_TOPIC, check_topic_name)


def topics(settings: Settings) -> tuple[str, ...]:
    """The Kafka topics the pipeline's jobs own (`Job.kafka_topics`)."""
    return (topic(settings),)

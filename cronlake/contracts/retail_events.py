"""The e-commerce events pipeline's contracts: the REES46 event row as landed, the cleaned versioned events
dataset, and the training-set export's dataset name."""

from __future__ import annotations

from cronlake.core import quality as Q
from cronlake.core.contracts import Dataset, Field, RecordType

EVENT_TYPES = ("view", "cart", "purchase")

# A landing CSV row as REES46 exports it; `event_time` is text like "2019-10-01 00:00:00 UTC" (parsed by the job).
EVENT = RecordType("retail_event", (
    Field("event_time"), Field("event_type"), Field("product_id", "long"), Field("category_id"),
    Field("category_code"), Field("brand"), Field("price", "double"), Field("user_id", "long"), Field("user_session"),
))

# Cleaned events. An exact duplicate is a row whose nine landed fields are all equal to another's: `event_key` is
# the SHA-256 of those fields, so duplicates collapse into one row and a file landed twice adds nothing.
EVENTS = Dataset(
    "retail_events", (
        Field("event_time", "timestamp"), Field("event_type"), Field("product_id", "long"), Field("category_id"),
        Field("category_code"), Field("brand"), Field("price", "double"), Field("user_id", "long"),
        Field("user_session"), Field("event_key"), Field("event_day"),
    ),
    produced_by="retail_events", partition_by=("event_day",), versioned=True, key=("event_key",),
    owner="shop-data@team", tags=("retail", "events", "rees46", "ml"),
    description="E-commerce clickstream (REES46 shape): one row per distinct view/cart/purchase event, prices > 0.",
    quality=(
        Q.not_null("event_time", "event_type", "product_id", "user_id", "user_session", "event_key"),
        Q.unique("event_key"),
        Q.accepted_values("event_type", EVENT_TYPES),
        Q.in_range("price", minimum=0.01, max_fraction=0.0),  # the job quarantines price <= 0 before publishing
        Q.not_null("category_code", "brand", max_fraction=0.9, severity="warn"),
    ),
)

# The training-set export (not a Delta table: a Parquet/CSV folder recorded with `catalog.record_version`).
TRAINSET = "retail_trainset"

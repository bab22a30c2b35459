"""The route table: which versioned dataset each named resource serves, its time column and its filters.

A resource names its dataset by name only; the dataset is looked up when a request comes, first among the
`Dataset` objects of the contracts modules, then in the catalog (any versioned dataset a job has published is
readable at `/datasets/{name}/rows`). A resource whose dataset is declared nowhere answers 404 "dataset not
available" instead of failing the app, so a pipeline can land after the API is deployed.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import lru_cache

import cronlake.contracts
from cronlake.core import catalog
from cronlake.core.contracts import Dataset, Field
from cronlake.core.settings import Settings


@dataclass(frozen=True)
class Resource:
    """`/{name}` serves the rows of `dataset`: `since`/`until` bound `time_column`, each of `filters` is an
    equality filter, rows come in `sort_key` order (default: the dataset's key)."""

    name: str
    dataset: str
    time_column: str | None
    filters: tuple[str, ...] = ()
    sort_key: tuple[str, ...] = ()
    summary: str = ""


# Dataset names as the pipelines' branches declare them today (retail_*.py contracts); edit here if they change.
RESOURCES = (
    Resource("transactions", "retail_transactions", "invoice_time", ("invoice_no", "customer_id", "country"),
             summary="Retail invoice lines (UCI online retail)"),
    Resource("orders", "retail_olist_order_lines", "purchase_time",
             ("order_id", "customer_unique_id", "seller_id", "order_status"), summary="E-commerce order lines (Olist)"),
    Resource("logs", "retail_log_hits", "hit_time", ("site", "status_class", "method", "page_type"),
             summary="Web server access log hits"),
    Resource("social-posts", "retail_social_posts", "created_at", ("lang", "user_screen_name"),
             summary="Social media posts about the shop"),
    Resource("ad-campaigns", "retail_ad_events", "replayed_at",
             ("xyz_campaign_id", "fb_campaign_id", "gender", "age", "interest"),
             summary="Ad campaign results, one row per ad (Facebook ad conversions, replayed: time = replay time)"),
)


# The catalog keeps Spark's type names; a type without a contract kind is compared as text.
CATALOG_KINDS = {"string": "string", "int": "int", "integer": "int", "bigint": "long", "long": "long",
                 "double": "double", "boolean": "bool", "bool": "bool", "timestamp": "timestamp", "date": "date"}


@lru_cache(maxsize=1)
def declared_datasets() -> dict[str, Dataset]:
    """Every versioned `Dataset` of the contracts modules, by name."""
    found: dict[str, Dataset] = {}
    for module in pkgutil.iter_modules(cronlake.contracts.__path__):
        contracts = importlib.import_module(f"cronlake.contracts.{module.name}")
        for value in vars(contracts).values():
            if isinstance(value, Dataset) and value.versioned:
                found[value.name] = value
    return found


def from_catalog(document: dict) -> Dataset:
    """A dataset as the catalog describes it (schema, partitioning, key): enough to read its Delta table."""
    return Dataset(document["_id"], tuple(Field(c["name"], CATALOG_KINDS.get(c["type"], "string"))
                                          for c in document.get("schema", [])),
                   produced_by=document.get("produced_by") or "",
                   partition_by=tuple(document.get("partition_by") or ()), versioned=True,
                   key=tuple(document.get("key") or ()), owner=document.get("owner") or "",
                   description=document.get("description") or "", tags=tuple(document.get("tags") or ()))


def resolve(settings: Settings, name: str) -> Dataset | None:
    """The versioned dataset called `name`, or None when neither the contracts nor the catalog know it."""
    declared = declared_datasets().get(name)
    if declared is not None:
        return declared
    document = catalog.dataset(settings, name)
    if document is None or document.get("format", "delta") != "delta" or not document.get("schema"):
        return None
    return from_catalog(document)

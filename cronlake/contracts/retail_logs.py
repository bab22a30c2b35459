"""The server-logs source of the e-commerce lake: web hits parsed from Apache/Nginx access logs, sessions, and the
serving collections of the traffic page (see docs/retail-logs.md)."""

from __future__ import annotations

from cronlake.core import quality as Q
from cronlake.core.contracts import Collection, Dataset, Field

# One regex for both formats: Apache/Nginx "combined" plus Nginx's optional trailing quoted X-Forwarded-For.
# Groups: remote ip, user, time, method, target, protocol, status, bytes, referer, user agent, forwarded-for.
LINE_PATTERN = (r'^(\S+) \S+ (\S+) \[([^\]]+)\] "(\S+) (\S+)(?: (\S+))?" (\d{3}) (\d+|-) '
                r'"([^"]*)" "([^"]*)"(?: "([^"]*)")?$')
LOG_TIME_FORMAT = "dd/MMM/yyyy:HH:mm:ss Z"
# User agents of robots: search-engine crawlers, monitors, scrapers and HTTP libraries (case-insensitive).
BOT_PATTERN = (r"(?i)(bot|crawl|spider|slurp|archiver|facebookexternalhit|mediapartners|bingpreview|"
               r"curl|wget|python-requests|python-urllib|java/|go-http-client|httpclient|scrapy|phantomjs|"
               r"headless|pingdom|uptime|monitor)")
SESSION_GAP_MINUTES = 30
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
PAGE_TYPES = ("product", "category", "basket", "image", "order_api", "article", "home", "static", "other")

HITS = Dataset("retail_log_hits", (
    Field("hit_key"), Field("site"), Field("client_ip"), Field("remote_ip"), Field("forwarded_for", optional=True),
    Field("hit_time", "timestamp"), Field("utc_offset"), Field("hit_hour", "timestamp"), Field("method"),
    Field("path"), Field("path_raw"), Field("query", optional=True), Field("query_raw", optional=True),
    Field("protocol", optional=True), Field("status", "int"), Field("status_class"), Field("bytes", "long"),
    Field("referer", optional=True), Field("referer_raw", optional=True), Field("user_agent"),
    Field("is_bot", "bool"), Field("page_type"), Field("is_mobile", "bool"), Field("product_id", optional=True),
    Field("category_id", optional=True), Field("source_file"), Field("hit_day"),
), produced_by="retail_logs", partition_by=("hit_day",), versioned=True, key=("hit_key",),
    owner="shop-data@team", tags=("traffic", "weblogs", "zanbil", "apache"),
    description="One row per distinct access-log line (exact duplicates dropped): typed, UTC time, decoded URL, "
                "bot flag, page type and product/category id.",
    quality=(
        Q.not_null("hit_key", "hit_time", "client_ip", "status", "path"),
        Q.unique("hit_key"),
        Q.accepted_values("status_class", STATUS_CLASSES),
        Q.accepted_values("page_type", PAGE_TYPES),
        Q.in_range("bytes", minimum=0),
        Q.fresh("hit_time", max_age_hours=48, severity="warn"),
    ))

# A session as of the run that computed it; a later file can extend a session: the row with the latest
# `last_hit` per `session_id` is the current one (see docs/retail-logs.md).
SESSIONS = Dataset("retail_log_sessions", (
    Field("session_id"), Field("site"), Field("client_ip"), Field("user_agent"), Field("is_bot", "bool"),
    Field("first_hit", "timestamp"), Field("last_hit", "timestamp"), Field("hits", "long"),
    Field("pages", "long"), Field("duration_seconds", "long"), Field("session_day"),
), produced_by="retail_logs", partition_by=("session_day",), versioned=True, key=("session_id", "last_hit"),
    owner="shop-data@team", tags=("traffic", "sessions", "weblogs"),
    description="Visits: hits of one client ip + user agent with no gap over 30 minutes.",
    quality=(
        Q.not_null("session_id", "first_hit", "last_hit"),
        Q.unique("session_id", "last_hit"),
        Q.in_range("duration_seconds", minimum=0),
        Q.in_range("hits", minimum=1),
    ))

# Serving collections; ids start with the site (an id starting with a date is not matched by nx-27017).
HOURLY = Collection("retail_traffic_hourly", key=("site", "hour"), produced_by="retail_logs",
                    fields=("site", "hour", "day", "hits", "unique_clients", "bot_hits", "bot_share", "status_2xx",
                            "status_3xx", "status_4xx", "status_5xx", "error_rate", "bytes", "lineage_run"),
                    indexes=(("day",),))
TOP_PAGES = Collection("retail_top_pages", key=("site", "day", "page_type", "item_id"), produced_by="retail_logs",
                       fields=("site", "day", "page_type", "item_id", "hits", "unique_clients", "lineage_run"),
                       indexes=(("site", "day", "-hits"),))
SESSION_SUMMARY = Collection("retail_sessions_daily", key=("site", "day"), produced_by="retail_logs",
                             fields=("site", "day", "sessions", "human_sessions", "median_duration_seconds",
                                     "pages_per_session", "bounce_rate", "lineage_run"))

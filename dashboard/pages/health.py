"""Pipeline health: last run of every job, recent failures, data quality of every catalogued dataset, lake backlog,
Kafka consumer lag, streaming heartbeat, the lake API's audited requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dash import Input, Output, callback, dcc, html

from cronlake.core import catalog
from cronlake.core.opsdb import API_AUDIT
from dashboard import store, ui

PATH = "/health"
NAME = "Pipeline health"
REFRESH_MS = 60_000
HEARTBEAT_STALE_S = 300

JOB_COLUMNS = [
    ("job", "Job"), ("status", "Status"), ("started", "Started"), ("ago", "Ago"), ("duration_s", "Seconds"),
    ("rows_in", "Rows in"), ("rows_out", "Rows out"), ("records_quarantined", "Records quarantined"),
    ("files_archived", "Files archived"), ("files_quarantined", "Files quarantined"), ("error", "Error"),
]
FAILURE_COLUMNS = [("started", "Started"), ("job", "Job"), ("status", "Status"), ("error", "Error")]
LAKE_COLUMNS = [("zone", "Zone"), ("source", "Source"), ("files", "Files"), ("bytes", "Bytes"),
                ("oldest", "Oldest file"), ("updated", "Counted")]
LAG_COLUMNS = [("group", "Consumer group"), ("topic", "Topic"), ("lag", "Lag"), ("partitions", "Per partition"),
               ("updated", "Measured")]
QUALITY_COLUMNS = [("dataset", "Dataset"), ("version", "Current version"), ("status", "Quality"),
                   ("rules", "Rules"), ("broken", "Rules not met"), ("created", "Published")]
API_COLUMNS = [("key_id", "API key"), ("status", "Status"), ("requests", "Requests"), ("rows", "Rows served")]
HEARTBEAT_COLUMNS = [("job", "Job"), ("last_batch", "Last batch"), ("age", "Age"), ("age_s", "Age (s)"),
                     ("alive", "Last sign of life"), ("batch_id", "Batch"), ("where", "Host / pid"),
                     ("state", "State")]


def layout(**_query: str) -> html.Div:
    return html.Div([html.H2(NAME), dcc.Interval(id="health-interval", interval=REFRESH_MS),
                     dcc.Loading(html.Div(id="health-content"))])


@ui.guarded
def jobs_section(tz: Any) -> html.Section:
    rows = [{**r, "started": ui.fmt_time(r.get("started_at"), tz), "ago": ui.fmt_age(r.get("started_at"))}
            for r in store.current().job_status()]
    return ui.section("Jobs (latest run of each)", ui.table("health-jobs", rows, JOB_COLUMNS, page_size=50))


@ui.guarded
def failures_section(tz: Any) -> html.Section:
    rows = [{**r, "started": ui.fmt_time(r.get("started_at"), tz)} for r in store.current().recent_failures()]
    if not rows:
        return ui.section("Recent failures", html.P("No failed or died run recorded.", id="health-no-failures"))
    return ui.section("Recent failures", ui.table("health-failures", rows, FAILURE_COLUMNS))


@ui.guarded
def lake_section(tz: Any) -> html.Section:
    rows = store.current().lake_census()

    def files_in(zone: str) -> int:
        return sum(r.get("files") or 0 for r in rows if r.get("zone") == zone)

    shown = [{**r, "oldest": ui.fmt_time(r.get("oldest_modified"), tz), "updated": ui.fmt_age(r.get("updated_at"))}
             for r in rows]
    return ui.section(
        "Lake",
        html.Div([ui.stat("Files waiting in landing", files_in("landing"), "health-landing-files"),
                  ui.stat("Files quarantined", files_in("quarantine"), "health-quarantine-files")], className="stats"),
        ui.table("health-lake", shown, LAKE_COLUMNS),
    )


@ui.guarded
def lag_section(tz: Any) -> html.Section:
    rows = [{**r, "partitions": ", ".join(f"{p}: {n}" for p, n in sorted((r.get("partitions") or {}).items())),
             "updated": ui.fmt_time(r.get("updated_at"), tz)} for r in store.current().kafka_lag()]
    return ui.section("Kafka consumer lag", ui.table("health-lag", rows, LAG_COLUMNS))


@ui.guarded
def heartbeat_section(tz: Any) -> html.Section:
    """Age of the stream's last micro-batch; `alive_at` (written between batches too) tells idle from dead."""
    now = datetime.now(UTC)
    rows = []
    for doc in store.current().heartbeats():
        seconds = ui.age_seconds(doc.get("last_batch_at"), now)
        alive = ui.age_seconds(doc.get("alive_at"), now)
        freshest = min((s for s in (seconds, alive) if s is not None), default=None)
        rows.append({"job": doc["_id"], "last_batch": ui.fmt_time(doc.get("last_batch_at"), tz),
                     "age": ui.fmt_age(doc.get("last_batch_at"), now),
                     "age_s": None if seconds is None else int(seconds), "alive": ui.fmt_age(doc.get("alive_at"), now),
                     "batch_id": doc.get("batch_id"), "where": f"{doc.get('host', '?')} / {doc.get('pid', '?')}",
                     "state": "ok" if freshest is not None and freshest <= HEARTBEAT_STALE_S else "STALE"})
    return ui.section("Streaming heartbeat", ui.table("health-heartbeats", rows, HEARTBEAT_COLUMNS))


@ui.guarded
def quality_section(tz: Any) -> html.Section:
    """The current version of every catalogued dataset and the rules it broke (a `fail` rule that broke stopped
    its run: that run is listed under the recent failures with the rule)."""
    rows = []
    for described in catalog.datasets(store.current().settings):
        current = catalog.latest_version(store.current().settings, described["_id"]) or {}
        broken = [q["rule"] for q in current.get("quality") or [] if not q["passed"]]
        rows.append({"dataset": described["_id"], "version": current.get("version"),
                     "status": "WARNED" if current.get("quality_status") == "warned" else "ok",
                     "rules": len(current.get("quality") or []), "broken": ", ".join(broken),
                     "created": ui.fmt_time(current.get("created_at"), tz)})
    if not rows:
        return ui.section("Data quality", html.P("No versioned dataset published yet.", id="health-no-quality"))
    return ui.section("Data quality", ui.table("health-quality", rows, QUALITY_COLUMNS))


@ui.guarded
def api_section(_tz: Any) -> html.Section:
    """The lake API's last hour of audited requests, per key and answer status."""
    since = datetime.now(UTC) - timedelta(hours=1)
    rows = [{"key_id": r["_id"]["key_id"] or "(no valid key)", "status": r["_id"]["status"],
             "requests": r["requests"], "rows": r["rows"]}
            for r in store.current().ops[API_AUDIT.name].aggregate([
                {"$match": {"at": {"$gte": since}}},
                {"$group": {"_id": {"key_id": "$key_id", "status": "$status"}, "requests": {"$sum": 1},
                            "rows": {"$sum": "$rows"}}},
                {"$sort": {"requests": -1}}])]
    if not rows:
        return ui.section("Lake API (last hour)", html.P("No API request in the last hour.", id="health-no-api"))
    return ui.section("Lake API (last hour)", ui.table("health-api", rows, API_COLUMNS))


@ui.guarded
def render(_tick: int | None = None) -> list[Any]:
    store.current().ping()
    tz = store.current().settings.tz
    return [jobs_section(tz), failures_section(tz), quality_section(tz), lake_section(tz), lag_section(tz),
            heartbeat_section(tz), api_section(tz)]


callback(Output("health-content", "children"), Input("health-interval", "n_intervals"))(render)

"""Zones: per-zone daily averages and fill ratios for a chosen day (latest by default), plus live zone averages."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from dash import Input, Output, callback, dcc, html

from cronlake.contracts.velib import LIVE_ZONE, ZONE_DAILY
from dashboard import store, ui
from dashboard.store import NoData

PATH = "/zones"
NAME = "Zones"

DAILY_COLUMNS = [
    ("zone", "Zone"), ("stations", "Stations"), ("samples", "Samples"), ("avg_bikes", "Avg bikes"),
    ("avg_mechanical", "Avg mechanical"), ("avg_ebike", "Avg e-bikes"), ("avg_docks_free", "Avg free docks"),
    ("fill_pct", "Fill %"),
]
LIVE_COLUMNS = [
    ("zone", "Zone"), ("stations", "Stations"), ("today_samples", "Today samples"),
    ("today_avg_mechanical", "Today avg mechanical"), ("today_avg_ebike", "Today avg e-bikes"),
    ("today_avg_docks_free", "Today avg free docks"), ("hour_avg_mechanical", "Last hour avg mechanical"),
    ("hour_avg_ebike", "Last hour avg e-bikes"), ("hour_avg_docks_free", "Last hour avg free docks"),
]


@ui.guarded
def layout(day: str | None = None, **_query: str) -> html.Div:
    controls, chosen = ui.day_picker("zones-day", ZONE_DAILY, day)
    if chosen is None:  # no daily data: render at once (the live section may still have something)
        return html.Div([html.H2(NAME), html.Div(render(None), id="zones-content")])
    return html.Div([html.H2(NAME), *controls, dcc.Loading(html.Div(id="zones-content"))])


def fill_chart(rows: list[dict[str, Any]]) -> go.Figure:
    ranked = sorted(rows, key=lambda r: r.get("fill_ratio") or 0, reverse=True)
    fig = go.Figure(go.Bar(x=[r["zone"] for r in ranked], y=[r.get("fill_ratio") for r in ranked],
                           marker_color="#2c78c8", hovertemplate="%{x}<br>fill %{y:.1%}<extra></extra>"))
    fig.update_layout(height=340, margin={"l": 50, "r": 10, "t": 10, "b": 120}, yaxis={"tickformat": ".0%",
                      "title": "avg bikes / avg capacity"}, xaxis={"tickangle": -45})
    return fig


@ui.guarded
def daily_section(day: str | None) -> html.Section:
    if day is None:
        raise NoData(ZONE_DAILY)
    rows = store.current().zone_daily(day)
    shown = [{**r, **{f: ui.num(r.get(f), 2) for f in ("avg_bikes", "avg_mechanical", "avg_ebike", "avg_docks_free")},
              "fill_pct": ui.share(r.get("fill_ratio"), 1)} for r in rows]
    return ui.section(f"Daily averages on {day}", dcc.Graph(figure=fill_chart(rows), config={"displaylogo": False}),
                      ui.table("zones-table", shown, DAILY_COLUMNS, page_size=100))


def live_row(doc: dict[str, Any]) -> dict[str, Any]:
    row = {"zone": doc.get("zone"), "stations": doc.get("stations")}
    for prefix, block in (("today", doc.get("today") or {}), ("hour", doc.get("last_hour") or {})):
        row[f"{prefix}_samples"] = block.get("samples")
        for field in ("avg_mechanical", "avg_ebike", "avg_docks_free"):
            row[f"{prefix}_{field}"] = ui.num(block.get(field), 2)
    return row


@ui.guarded
def live_section() -> html.Section:
    rows = store.current().live_zone_rows()
    if not rows:
        raise NoData(LIVE_ZONE)
    return ui.section("Live averages", ui.table("zones-live", [live_row(r) for r in rows], LIVE_COLUMNS, 100))


@ui.guarded
def render(day: str | None) -> list[Any]:
    store.current().ping()
    return [daily_section(day), live_section()]


callback(Output("zones-content", "children"), Input("zones-day", "value"))(render)

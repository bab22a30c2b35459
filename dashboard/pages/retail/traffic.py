"""Shop traffic from the web server logs: hits, unique clients, bot share and errors hour by hour, the most
requested product and category pages, and daily session figures (count, median duration, pages, bounce rate)."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from dash import Input, Output, callback, dcc, html

from dashboard import store, ui
from dashboard.pages.retail import traffic_queries as queries
from dashboard.store import NoData

PATH = "/retail/traffic"
NAME = "Traffic"
STATUS_COLORS = {"2xx": "#3c9a5f", "3xx": "#2c78c8", "4xx": "#e0a030", "5xx": "#c8452c"}
TOP_COLUMNS = [("_id", "Id"), ("hits", "Hits"), ("unique_clients", "Clients (summed per day)")]
SESSION_COLUMNS = [("day", "Day"), ("sessions", "Sessions"), ("human_sessions", "Human sessions"),
                   ("median_duration_seconds", "Median duration (s)"), ("pages_per_session", "Pages / session"),
                   ("bounce_pct", "Bounce %")]


def layout(**_query: str) -> html.Div:
    return html.Div([html.H2(NAME), dcc.Dropdown(id="traffic-site", clearable=False),
                     dcc.Interval(id="traffic-interval", interval=30_000), html.Div(id="traffic-content")])


def status_chart(rows: list[dict[str, Any]]) -> go.Figure:
    hours = [r["hour"] for r in rows]
    fig = go.Figure([go.Bar(x=hours, y=[r[f"status_{c}"] for r in rows], name=c, marker_color=color)
                     for c, color in STATUS_COLORS.items()])
    fig.update_layout(barmode="stack", height=280, margin={"l": 40, "r": 10, "t": 10, "b": 40},
                      yaxis={"title": "hits"})
    return fig


def rate_chart(rows: list[dict[str, Any]]) -> go.Figure:
    hours = [r["hour"] for r in rows]
    fig = go.Figure([go.Scatter(x=hours, y=[100 * r["error_rate"] for r in rows], name="errors % (4xx+5xx)"),
                     go.Scatter(x=hours, y=[100 * r["bot_share"] for r in rows], name="bot share %")])
    fig.update_layout(height=240, margin={"l": 40, "r": 10, "t": 10, "b": 40}, yaxis={"title": "%"})
    return fig


@ui.guarded
def traffic_section(site: str) -> html.Section:
    rows = queries.hourly(store.current(), site)
    hits = sum(r["hits"] for r in rows)
    errors = sum(r["status_4xx"] + r["status_5xx"] for r in rows)
    return ui.section(
        "Traffic and errors by hour (UTC)",
        html.Div([ui.stat("Hits", hits, "traffic-hits"), ui.stat("Errors %", ui.share(errors, hits)),
                  ui.stat("Bot share %", ui.share(sum(r["bot_hits"] for r in rows), hits), "traffic-bots"),
                  ui.stat("MB sent", ui.num(sum(r["bytes"] for r in rows) / 1e6, 1))], className="stats"),
        dcc.Graph(id="traffic-status", figure=status_chart(rows), config={"displaylogo": False}),
        dcc.Graph(id="traffic-rates", figure=rate_chart(rows), config={"displaylogo": False}),
    )


@ui.guarded
def pages_section(site: str) -> html.Section:
    s = store.current()
    return ui.section("Top pages", html.Div([
        html.Div([html.H4("Products"), ui.table("traffic-top-products", queries.top_pages(s, site, "product"),
                                                TOP_COLUMNS)]),
        html.Div([html.H4("Categories (filters)"),
                  ui.table("traffic-top-categories", queries.top_pages(s, site, "category"), TOP_COLUMNS)]),
    ], className="columns"))


@ui.guarded
def sessions_section(site: str) -> html.Section:
    rows = [{**r, "bounce_pct": ui.num(100 * r["bounce_rate"], 1)} for r in queries.sessions(store.current(), site)]
    return ui.section("Sessions (30-minute inactivity)", ui.table("traffic-sessions", rows, SESSION_COLUMNS))


def site_options(_tick: int | None = None) -> list[dict[str, str]]:
    try:
        return [{"label": site, "value": site} for site in queries.sites(store.current())]
    except NoData:  # the content area says which job fills the page
        return []


@ui.guarded
def render(site: str | None, _tick: int | None = None) -> list[Any]:
    store.current().ping()
    site = site or queries.sites(store.current())[0]
    return [traffic_section(site), pages_section(site), sessions_section(site)]


callback(Output("traffic-site", "options"), Input("traffic-interval", "n_intervals"))(site_options)
callback(Output("traffic-content", "children"), Input("traffic-site", "value"),
         Input("traffic-interval", "n_intervals"))(render)

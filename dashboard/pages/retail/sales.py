"""Retail sales: revenue by day, by country (UCI) or state (Olist) and by category, filtered by source and date
range, with the daily table and its CSV download."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from dash import Input, Output, State, callback, dcc, html, no_update
from pymongo.errors import PyMongoError

from dashboard import store, ui
from dashboard.pages.retail import sales_queries as queries
from dashboard.store import InvalidInput, NoData

PATH = "/retail/sales"
NAME = "Sales"
TABLE_COLUMNS = [("source", "Source"), ("day", "Day"), ("region", "Country / state"), ("category", "Category"),
                 ("orders", "Orders"), ("lines", "Lines"), ("revenue", "Revenue"),
                 ("cancelled_lines", "Cancelled lines"), ("lineage_run", "Run")]


def layout(**_query: str) -> html.Div:
    return html.Div([
        html.H2(NAME),
        html.Div([
            dcc.Dropdown(id="sales-source", options=[{"label": "both sources", "value": ""}]
                         + [{"label": s, "value": s} for s in queries.SOURCES], value="", clearable=False),
            dcc.DatePickerRange(id="sales-range", display_format="YYYY-MM-DD"),
            html.Button("Download CSV", id="sales-download-button"), dcc.Download(id="sales-download"),
        ], className="filters"),
        html.Div(id="sales-content"),
    ])


def bar(rows: list[dict[str, Any]], field: str, limit: int = 25) -> go.Figure:
    shown = rows[:limit]
    fig = go.Figure(go.Bar(x=[r[field] for r in shown], y=[r["revenue"] for r in shown], marker_color="#2c78c8"))
    fig.update_layout(height=260, margin={"l": 50, "r": 10, "t": 10, "b": 80}, yaxis={"title": "revenue"})
    return fig


def day_lines(rows: list[dict[str, Any]]) -> go.Figure:
    fig = go.Figure()
    for source in queries.SOURCES:
        mine = [r for r in rows if r["source"] == source]
        if mine:
            fig.add_trace(go.Scatter(x=[r["day"] for r in mine], y=[r["revenue"] for r in mine], name=source,
                                     mode="lines+markers"))
    fig.update_layout(height=280, margin={"l": 50, "r": 10, "t": 10, "b": 40}, yaxis={"title": "net revenue"})
    return fig


@ui.guarded
def render(source: str | None, start: str | None, end: str | None) -> list[Any]:
    rows = queries.sales(store.current(), source or None, start, end)
    return [
        ui.section("Revenue by day", dcc.Graph(id="sales-by-day", config={"displaylogo": False},
                                               figure=day_lines(queries.totals(rows, "source", "day")))),
        html.Div([
            ui.section("By country / state", dcc.Graph(id="sales-by-region", figure=bar(
                queries.totals(rows, "region"), "region"), config={"displaylogo": False})),
            ui.section("By category", dcc.Graph(id="sales-by-category", figure=bar(
                queries.totals(rows, "category"), "category"), config={"displaylogo": False})),
        ], className="columns"),
        ui.section("Daily sales", ui.table("sales-table", rows, TABLE_COLUMNS)),
    ]


def download(_clicks: int | None, source: str | None, start: str | None, end: str | None) -> Any:
    """The table as CSV; nothing to download (no data yet, MongoDB away: the page says so) sends nothing."""
    try:
        rows = queries.sales(store.current(), source or None, start, end)
    except (NoData, InvalidInput, PyMongoError):
        return no_update
    return dcc.send_string(queries.as_csv(rows), "retail_sales_daily.csv")


callback(Output("sales-content", "children"), Input("sales-source", "value"), Input("sales-range", "start_date"),
         Input("sales-range", "end_date"))(render)
callback(Output("sales-download", "data"), Input("sales-download-button", "n_clicks"),
         State("sales-source", "value"), State("sales-range", "start_date"), State("sales-range", "end_date"),
         prevent_initial_call=True)(download)

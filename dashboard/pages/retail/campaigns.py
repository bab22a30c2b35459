"""Campaign performance for the e-commerce team: the Facebook ad campaigns' impressions, clicks, spend,
conversions, CTR, CPC, conversion rate and cost per conversion; one row per campaign, and the breakdown by age,
gender and interest of all campaigns or of the campaign chosen (`?campaign=916`), with a CSV download.

The ads come from a replayed table without timestamps: the page shows totals, not a time series, and says so.
Ads reporting conversions without any click (an upstream inconsistency) are counted in their own column.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from dash import Input, Output, State, callback, dcc, html, no_update
from pymongo.errors import PyMongoError

from cronlake.contracts.retail_ads import ALL
from dashboard import store, ui
from dashboard.pages.retail import campaigns_queries as queries
from dashboard.store import InvalidInput, NoData

PATH = "/retail/campaigns"
NAME = "Campaigns"
COLUMNS = [("ads", "Ads"), ("impressions", "Impressions"), ("clicks", "Clicks"),
           ("spent", "Spent"), ("ctr_pct", "CTR %"), ("cpc", "CPC"), ("total_conversion", "Conversions"),
           ("approved_conversion", "Approved"), ("conversion_rate_pct", "Conversions / click %"),
           ("approval_rate_pct", "Approved %"), ("cost_per_conversion", "Cost / conversion"),
           ("cost_per_approved", "Cost / approved"), ("zero_click_ads", "Ads with conversions, 0 clicks")]


def layout(campaign: str | None = None, **_query: str) -> html.Div:
    """The page; a `?campaign=` the collection does not hold is refused with a notice (all campaigns shown)."""
    warning = None
    try:
        known = queries.campaigns(store.current())
    except (NoData, PyMongoError):
        known = []
    if campaign not in (None, ALL, *known):
        warning, campaign = ui.notice(f"Invalid input: unknown campaign {campaign[:40]!r}; showing all campaigns.",
                                      "invalid"), None
    options = [{"label": "all campaigns", "value": ALL}] + [{"label": f"campaign {c}", "value": c} for c in known]
    return html.Div([
        html.H2(NAME),
        warning,
        html.Div([
            dcc.Dropdown(id="ads-campaign", options=options, value=campaign or ALL, clearable=False),
            html.Button("Download CSV", id="ads-download-button"), dcc.Download(id="ads-download"),
        ], className="filters"),
        html.Div(id="ads-content"),
    ])


def shown(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table rows: rates as percentages, costs in two decimals."""
    return [{**d, "ctr_pct": ui.num(None if d["ctr"] is None else 100 * d["ctr"], 4),
             "conversion_rate_pct": ui.num(None if d["conversion_rate"] is None else 100 * d["conversion_rate"], 2),
             "approval_rate_pct": ui.num(None if d["approval_rate"] is None else 100 * d["approval_rate"], 2),
             "cpc": ui.num(d["cpc"], 2), "cost_per_conversion": ui.num(d["cost_per_conversion"], 2),
             "cost_per_approved": ui.num(d["cost_per_approved"], 2)} for d in docs]


def rates_chart(docs: list[dict[str, Any]], title: str) -> go.Figure:
    """CTR % (bars, left axis) and conversions per click % (markers, right axis) for each value of a dimension."""
    values = [d["value"] for d in docs]
    fig = go.Figure([
        go.Bar(x=values, y=[None if d["ctr"] is None else 100 * d["ctr"] for d in docs], name="CTR %",
               marker_color="#2c78c8"),
        go.Scatter(x=values, y=[None if d["conversion_rate"] is None else 100 * d["conversion_rate"] for d in docs],
                   name="conversions / click %", mode="markers", marker={"color": "#3c9a5f", "size": 9},
                   yaxis="y2"),
    ])
    fig.update_layout(height=260, margin={"l": 50, "r": 50, "t": 10, "b": 40}, legend={"orientation": "h", "y": 1.12},
                      xaxis={"title": title, "type": "category"}, yaxis={"title": "CTR %"},
                      yaxis2={"title": "conversions / click %", "overlaying": "y", "side": "right",
                              "rangemode": "tozero"})
    return fig


def kpis(total: dict[str, Any]) -> html.Div:
    return html.Div([
        ui.stat("Ads", f"{total['ads']:,}", "ads-ads"),
        ui.stat("Impressions", f"{total['impressions']:,}", "ads-impressions"),
        ui.stat("Clicks", f"{total['clicks']:,}", "ads-clicks"),
        ui.stat("Spent", f"{total['spent']:,.2f}", "ads-spent"),
        ui.stat("CTR", "—" if total["ctr"] is None else f"{100 * total['ctr']:.3f}%", "ads-ctr"),
        ui.stat("CPC", "—" if total["cpc"] is None else f"{total['cpc']:.2f}", "ads-cpc"),
        ui.stat("Conversions", f"{total['total_conversion']:,}", "ads-conversions"),
        ui.stat("Approved", f"{total['approved_conversion']:,}", "ads-approved"),
        ui.stat("Conversions / click", "—" if total["conversion_rate"] is None
                else f"{100 * total['conversion_rate']:.2f}%", "ads-conversion-rate"),
        ui.stat("Cost / conversion", "—" if total["cost_per_conversion"] is None
                else f"{total['cost_per_conversion']:.2f}", "ads-cost-per-conversion"),
        ui.stat("Ads with conversions, 0 clicks", total["zero_click_ads"], "ads-zero-click"),
    ], className="stats")


def breakdown(dimension: str, docs: list[dict[str, Any]]) -> html.Section:
    return ui.section(f"By {dimension}", dcc.Graph(id=f"ads-chart-{dimension}", figure=rates_chart(docs, dimension),
                                                   config={"displaylogo": False}),
                      ui.table(f"ads-by-{dimension}", shown(docs), [("value", dimension.capitalize()), *COLUMNS],
                               page_size=10))


@ui.guarded
def render(campaign: str | None) -> list[Any]:
    s = store.current()
    chosen = queries.check_campaign(s, campaign)
    mine = queries.performance(s, chosen)
    every = mine if chosen == ALL else queries.performance(s, ALL)
    total = mine["total"][0]
    title = "all campaigns" if chosen == ALL else f"campaign {chosen}"
    return [
        html.H3(f"Performance of {title}", id="ads-title"),
        html.P(f"{total['zero_click_ads']} ads report {total['zero_click_conversions']} conversions without a "
               "single click (an inconsistency of the source, counted in 'conversions / click'). The source has no "
               "timestamps: events are stamped when replayed, so this page shows totals, not a time series.",
               className="notice hint"),
        kpis(total),
        ui.section("Campaigns", ui.table("ads-campaigns", shown(every.get("campaign", [])),
                                                   [("value", "Campaign"), *COLUMNS])),
        html.Div([breakdown(d, mine.get(d, [])) for d in ("age", "gender")], className="columns"),
        breakdown("interest", mine.get("interest", [])),
    ]


def download(_clicks: int | None, campaign: str | None) -> Any:
    """The chosen campaign's documents as CSV; nothing to download (no data, MongoDB away) sends nothing."""
    try:
        s = store.current()
        rows = queries.performance(s, queries.check_campaign(s, campaign))
    except (NoData, InvalidInput, PyMongoError):
        return no_update
    return dcc.send_string(queries.as_csv(rows), "retail_ad_performance.csv")


callback(Output("ads-content", "children"), Input("ads-campaign", "value"))(render)
callback(Output("ads-download", "data"), Input("ads-download-button", "n_clicks"), State("ads-campaign", "value"),
         prevent_initial_call=True)(download)

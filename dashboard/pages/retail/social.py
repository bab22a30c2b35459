"""Social mentions: posts mentioning the tracked retailers on a chosen day (latest by default) — mentions over time
per brand (per 10 minutes or hour, the day's top brands or those picked), the most mentioned brands, retweet
share, languages and top hashtags."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from dash import Input, Output, callback, dcc, html

from cronlake.contracts.retail_social import DAY_SUMMARY
from dashboard import store, ui
from dashboard.pages.retail import social_queries as queries
from dashboard.store import InvalidInput, NoData

PATH = "/retail/social"
NAME = "Social"
BRAND_COLUMNS = [("brand", "Brand"), ("mentions", "Mentions"), ("share_pct", "% of posts")]
LANGUAGE_COLUMNS = [("lang", "Language"), ("posts", "Posts"), ("share_pct", "% of posts")]
HASHTAG_COLUMNS = [("hashtag", "Hashtag"), ("posts", "Posts")]


@ui.guarded
def layout(day: str | None = None, brand: str | None = None, **_query: str) -> html.Div:
    controls, chosen = ui.day_picker("social-day", DAY_SUMMARY, day)
    if chosen is None:  # nothing published yet: the content says which job to run
        return html.Div([html.H2(NAME), html.Div(render(None, "10min", None), id="social-content")])
    warning = None
    try:
        picked = queries.check_brands(store.current(), brand)
    except InvalidInput as exc:
        warning, picked = ui.notice(f"Invalid input: {exc}; showing the day's top brands.", "invalid"), []
    return html.Div([
        html.H2(NAME), *controls, warning,
        html.Div([
            html.Label("Brands", htmlFor="social-brands"),
            dcc.Dropdown(id="social-brands", options=queries.brands(store.current()), value=picked, multi=True,
                         placeholder=f"the day's top {queries.DEFAULT_BRANDS}"),
            dcc.RadioItems(id="social-granularity", value="10min", inline=True,
                           options=[{"label": f"per {label}", "value": value}
                                    for value, label in queries.GRANULARITIES.items()]),
        ], className="controls wide"),
        dcc.Loading(html.Div(id="social-content")),
    ])


def mentions_chart(labels: list[str], counts: dict[str, list[int]]) -> go.Figure:
    fig = go.Figure([go.Scatter(x=labels, y=values, name=brand, mode="lines+markers")
                     for brand, values in counts.items()])
    fig.update_layout(height=300, margin={"l": 40, "r": 10, "t": 10, "b": 40}, hovermode="x unified",
                      yaxis={"title": "posts mentioning"}, legend={"orientation": "h", "y": -0.2})
    return fig


def brands_chart(totals: list[dict[str, Any]], limit: int = 15) -> go.Figure:
    shown = totals[:limit]
    fig = go.Figure(go.Bar(x=[r["brand"] for r in shown], y=[r["mentions"] for r in shown], marker_color="#2c78c8"))
    fig.update_layout(height=260, margin={"l": 40, "r": 10, "t": 10, "b": 80}, yaxis={"title": "mentions"})
    return fig


@ui.guarded
def mentions_section(day: str, granularity: str, chosen: list[str], posts: int) -> html.Div:
    rows = queries.mentions(store.current(), day, granularity)
    if not rows:
        return html.Div(ui.notice(f"No post of {day} names a tracked brand.", "hint"))
    totals = queries.brand_totals(rows)
    shown = chosen or [r["brand"] for r in totals[:queries.DEFAULT_BRANDS]]
    labels, counts = queries.series(rows, shown, granularity)
    which = "chosen brands" if chosen else f"top {len(shown)} brands"
    return html.Div([
        ui.section(f"Mentions per {queries.GRANULARITIES[granularity]} (UTC), {which}",
                   dcc.Graph(id="social-mentions", figure=mentions_chart(labels, counts),
                             config={"displaylogo": False})),
        ui.section("Most mentioned brands", html.Div([
            dcc.Graph(id="social-top-brands", figure=brands_chart(totals), config={"displaylogo": False}),
            ui.table("social-brand-table", [{**r, "share_pct": ui.share(r["mentions"], posts)} for r in totals],
                     BRAND_COLUMNS, page_size=10),
        ], className="columns")),
    ])


@ui.guarded
def render(day: str | None, granularity: str | None, brands: Any) -> list[Any]:
    s = store.current()
    s.ping()
    if day is None:
        raise NoData(DAY_SUMMARY)
    day = s.check_day(DAY_SUMMARY, day)
    granularity = queries.check_granularity(granularity)
    chosen = queries.check_brands(s, brands)
    doc = queries.summary(s, day)
    posts = doc["posts"]
    languages = sorted(({"lang": k, "posts": n, "share_pct": ui.share(n, posts)} for k, n in doc["languages"].items()),
                       key=lambda r: (-r["posts"], r["lang"]))
    return [
        html.Div([ui.stat("Posts", posts, "social-posts"), ui.stat("Retweets", doc["retweets"], "social-retweets"),
                  ui.stat("Retweet share %", ui.share(doc["retweets"], posts), "social-retweet-share"),
                  ui.stat("Languages", len(languages), "social-language-count")], className="stats"),
        mentions_section(day, granularity, chosen, posts),
        html.Div([
            ui.section("Languages", ui.table("social-languages", languages, LANGUAGE_COLUMNS, page_size=10)),
            ui.section("Top hashtags", ui.table("social-hashtags", doc["top_hashtags"], HASHTAG_COLUMNS)),
        ], className="columns"),
    ]


callback(Output("social-content", "children"), Input("social-day", "value"), Input("social-granularity", "value"),
         Input("social-brands", "value"))(render)

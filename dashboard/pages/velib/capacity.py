"""Capacity: are the stations sized right? Share of time full and empty per station, zone and commune over a period.

Time-weighted (seconds held, from `velib_station_capacity`), not snapshot counts: a station often full looks
under-sized (riders cannot return a bike), one often empty under-supplied (riders find no bike). One scatter plot
places every station by both shares, sized by capacity; ranked tables, zone and commune rankings, an hour-of-week
heat map for a station or zone, and the station ranking as CSV.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from dash import Input, Output, State, callback, dcc, html, no_update
from plotly.subplots import make_subplots
from pymongo.errors import PyMongoError

from dashboard import store, ui
from dashboard.pages.velib import capacity_queries as queries
from dashboard.store import InvalidInput, NoData

PATH = "/capacity"
NAME = "Capacity"
DEFAULT_MIN_HOURS = 12
STATION_COLUMNS = [("station_code", "Code"), ("name", "Name"), ("zone", "Zone"), ("capacity", "Capacity"),
                   ("observed_h", "Observed h"), ("full_pct", "Full %"), ("empty_pct", "Empty %")]


def group_columns(field: str, label: str) -> list[ui.Column]:
    return [(field, label), ("stations", "Stations"), ("observed_h", "Observed h"), ("full_pct", "Full %"),
            ("empty_pct", "Empty %")]


@ui.guarded
def layout(start: str | None = None, end: str | None = None, **_query: str) -> html.Div:
    s = store.current()
    known = queries.day_bounds(s)
    warning = None
    try:
        first, last = queries.period(s, start, end)
    except InvalidInput as exc:
        warning = ui.notice(f"Invalid input: {exc}; showing the latest days.", "invalid")
        first, last = queries.period(s, None, None)
    return html.Div([
        html.H2(NAME),
        html.P(f"Share of the observed time each station spent full (no free dock: under-sized when it is "
               f"≥ {queries.OFTEN:.0f} %) or empty (no bike: under-supplied). Each snapshot holds until the "
               "station's next one, for at most 2 h (the job's default cap); out-of-service time is not counted.",
               className="lead"),
        warning,
        html.Div([
            dcc.DatePickerRange(id="capacity-range", display_format="YYYY-MM-DD", start_date=first, end_date=last,
                                min_date_allowed=known[0], max_date_allowed=known[-1]),
            html.Label("Min observed hours", htmlFor="capacity-min-hours"),
            dcc.Input(id="capacity-min-hours", type="number", min=0, step=1, value=DEFAULT_MIN_HOURS, debounce=True),
            html.Button("Download CSV", id="capacity-download-button"), dcc.Download(id="capacity-download"),
        ], className="controls wide"),
        dcc.Loading(html.Div(id="capacity-content")),
        ui.section("Hour of the week", dcc.Dropdown(id="capacity-focus", options=focus_options(s, last),
                                                    placeholder="the most often full station of the period"),
                   html.P(id="capacity-focus-title"),
                   dcc.Graph(id="capacity-heatmap", config={"displaylogo": False})),
    ])


def focus_options(s: store.Store, day: str) -> list[dict[str, str]]:
    """Every zone, then every station of `day` (latest by default), as heat map subjects."""
    docs = queries.period_stations(s, day, day)
    zones = sorted({d["zone"] for d in docs if isinstance(d.get("zone"), str)})
    stations = sorted(docs, key=lambda d: (str(d.get("name")), d["station_code"]))
    return ([{"label": f"zone: {z}", "value": f"zone:{z}"} for z in zones]
            + [{"label": f"{d.get('name')} ({d['station_code']})", "value": f"station:{d['station_code']}"}
               for d in stations])


def min_hours_value(value: Any) -> float:
    if value is None or value == "":
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InvalidInput(f"not a number of hours: {str(value)[:40]!r}")
    return float(value)


def scatter(rows: list[dict[str, Any]]) -> go.Figure:
    """Every station by share of time empty (x) and full (y), sized by capacity, coloured by what it looks like."""
    often = queries.OFTEN
    kinds = (("under-sized (often full)", "#c0392b", lambda r: r["full_pct"] >= often > r["empty_pct"]),
             ("under-supplied (often empty)", "#2c78c8", lambda r: r["empty_pct"] >= often > r["full_pct"]),
             ("both: rebalancing", "#8e44ad", lambda r: min(r["full_pct"], r["empty_pct"]) >= often),
             ("fine", "#95a5a6", lambda r: max(r["full_pct"], r["empty_pct"]) < often))
    fig = go.Figure()
    for label, colour, belongs in kinds:
        mine = [r for r in rows if belongs(r)]
        fig.add_trace(go.Scatter(
            x=[r["empty_pct"] for r in mine], y=[r["full_pct"] for r in mine], mode="markers", name=label,
            marker={"color": colour, "size": [max(6, (r["capacity"] or 0) / 2) for r in mine], "opacity": 0.7,
                    "line": {"width": 0.5, "color": "white"}},
            customdata=[[r["name"], r["station_code"], r["zone"], r["capacity"], r["observed_h"]] for r in mine],
            hovertemplate="%{customdata[0]} (%{customdata[1]})<br>%{customdata[2]}<br>capacity %{customdata[3]}"
                          "<br>full %{y:.1f} % · empty %{x:.1f} % of %{customdata[4]} h<extra></extra>"))
    for line in ({"type": "line", "x0": often, "x1": often, "y0": 0, "y1": 100},
                 {"type": "line", "x0": 0, "x1": 100, "y0": often, "y1": often}):
        fig.add_shape(**line, line={"dash": "dot", "color": "#7f8c8d", "width": 1})
    top = max([often * 2] + [max(r["full_pct"], r["empty_pct"]) for r in rows])
    fig.update_layout(height=420, margin={"l": 60, "r": 10, "t": 10, "b": 50}, legend={"orientation": "h", "y": 1.08},
                      xaxis={"title": "% of time empty (no bike)", "range": [-1, min(100, top + 3)]},
                      yaxis={"title": "% of time full (no free dock)", "range": [-1, min(100, top + 3)]})
    return fig


@ui.guarded
def render(start: str | None, end: str | None, min_hours: Any) -> list[Any]:
    s = store.current()
    first, last = queries.period(s, start, end)
    everyone = queries.station_totals(s, first, last)
    rows = queries.observed_enough(everyone, min_hours_value(min_hours))
    full, empty = queries.ranking(rows, "full_pct"), queries.ranking(rows, "empty_pct")
    often = queries.OFTEN

    def count(measure: str) -> int:
        return sum(1 for r in rows if r[measure] >= often)

    return [
        html.Div([ui.stat("Stations ranked", len(rows), "capacity-stations"),
                  ui.stat(f"Full ≥ {often:.0f} % of the time", count("full_pct"), "capacity-undersized"),
                  ui.stat(f"Empty ≥ {often:.0f} % of the time", count("empty_pct"), "capacity-undersupplied")],
                 className="stats"),
        ui.section(f"Stations from {first} to {last}", dcc.Graph(id="capacity-scatter", figure=scatter(rows),
                                                                 config={"displaylogo": False})),
        html.Div([ui.section("Under-sized: most often full", ui.table("capacity-full", full, STATION_COLUMNS)),
                  ui.section("Under-supplied: most often empty", ui.table("capacity-empty", empty, STATION_COLUMNS))],
                 className="columns"),
        html.Div([ui.section("Zones", ui.table("capacity-zones", queries.group_totals(everyone, "zone"),
                                               group_columns("zone", "Zone"), page_size=50)),
                  ui.section("Communes", ui.table("capacity-communes", queries.group_totals(everyone, "commune"),
                                                  group_columns("commune", "Commune"), page_size=50))],
                 className="columns"),
    ]


def heatmap_figure(grids: dict[str, list[list[float | None]]]) -> go.Figure:
    """Full and empty shares by weekday and hour, on one colour scale up to the largest share (at least 10 %)."""
    top = max([queries.OFTEN] + [v for grid in grids.values() for row in grid for v in row if v is not None])
    fig = make_subplots(rows=1, cols=2, subplot_titles=("% of time full", "% of time empty"), horizontal_spacing=0.08)
    for column, (measure, scale) in enumerate((("full", "Reds"), ("empty", "Blues")), start=1):
        fig.add_trace(go.Heatmap(z=grids[measure], x=list(range(24)), y=list(queries.WEEKDAYS), zmin=0, zmax=top,
                                 colorscale=scale, name=measure, colorbar={"x": 0.46 if column == 1 else 1.0,
                                                                           "thickness": 10, "ticksuffix": " %"},
                                 hovertemplate="%{y} %{x}:00 · %{z:.1f} %<extra></extra>"), row=1, col=column)
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="local hour", dtick=3)
    fig.update_layout(height=300, margin={"l": 50, "r": 10, "t": 30, "b": 40})
    return fig


@ui.guarded
def heatmap(start: str | None, end: str | None, focus: str | None, min_hours: Any) -> tuple[str, go.Figure]:
    s = store.current()
    first, last = queries.period(s, start, end)
    if not focus:
        rows = queries.observed_enough(queries.station_totals(s, first, last), min_hours_value(min_hours))
        top = queries.ranking(rows, "full_pct") or rows
        if not top:
            return "No station observed long enough in this period.", go.Figure()
        focus = f"station:{top[0]['station_code']}"
    label, collection, subject = queries.focus_query(s, focus)
    return f"{label}, {first} to {last}", heatmap_figure(queries.hour_of_week(s, first, last, collection, subject))


def heatmap_outputs(start: str | None, end: str | None, focus: str | None, min_hours: Any) -> tuple[Any, Any]:
    """The title and the figure; a message in the title (and no figure) when the inputs are refused."""
    result = heatmap(start, end, focus, min_hours)
    return result if isinstance(result, tuple) else (result, go.Figure())


def download(_clicks: int | None, start: str | None, end: str | None, min_hours: Any) -> Any:
    """The station ranking (most often full first) as CSV; nothing to rank or bad inputs sends nothing."""
    try:
        s = store.current()
        first, last = queries.period(s, start, end)
        rows = queries.observed_enough(queries.station_totals(s, first, last), min_hours_value(min_hours))
    except (NoData, InvalidInput, PyMongoError):
        return no_update
    ranked = sorted(rows, key=lambda r: (-r["full_pct"], -r["empty_pct"], r["station_code"]))
    return dcc.send_string(ui.csv_text(ranked, queries.CSV_FIELDS), f"velib_capacity_{first}_{last}.csv")


RANGE = (Input("capacity-range", "start_date"), Input("capacity-range", "end_date"))
callback(Output("capacity-content", "children"), *RANGE, Input("capacity-min-hours", "value"))(render)
callback(Output("capacity-focus-title", "children"), Output("capacity-heatmap", "figure"), *RANGE,
         Input("capacity-focus", "value"), Input("capacity-min-hours", "value"))(heatmap_outputs)
callback(Output("capacity-download", "data"), Input("capacity-download-button", "n_clicks"),
         State("capacity-range", "start_date"), State("capacity-range", "end_date"),
         State("capacity-min-hours", "value"), prevent_initial_call=True)(download)

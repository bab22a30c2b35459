"""Empty and full stations: for a chosen day, the stations that ran out of bikes or of docks, and how often.

The list the team uses to resize stations: samples with zero bikes (or zero free docks) and their share of the
day's samples, from velib_station_daily.
"""

from __future__ import annotations

from typing import Any

from dash import Input, Output, callback, dcc, html

from cronlake.contracts.velib import STATION_DAILY
from dashboard import store, ui
from dashboard.store import NoData

PATH = "/extremes"
NAME = "Empty & full"


def columns(counter: str, label: str) -> list[ui.Column]:
    return [("station_code", "Code"), ("name", "Name"), ("zone", "Zone"), ("capacity", "Capacity"),
            (counter, label), ("samples", "Samples"), ("share", "Share %")]


@ui.guarded
def layout(day: str | None = None, **_query: str) -> html.Div:
    controls, chosen = ui.day_picker("extremes-day", STATION_DAILY, day)
    if chosen is None:
        return html.Div([html.H2(NAME), ui.no_data(NoData(STATION_DAILY))])
    return html.Div([html.H2(NAME), *controls, dcc.Loading(html.Div(id="extremes-content"))])


def listing(kind: str, day: str, rows: list[dict[str, Any]], counter: str, label: str) -> html.Section:
    shown = [{**r, "share": ui.share(r.get(counter), r.get("samples"))} for r in rows]
    what = "ran out of bikes" if kind == "empty" else "had no free dock"
    return ui.section(
        f"{'Empty' if kind == 'empty' else 'Full'} stations",
        html.P([html.Span(str(len(rows)), id=f"extremes-{kind}-count"), f" stations {what} at least once on {day}."]),
        ui.table(f"extremes-{kind}", shown, columns(counter, label)),
    )


@ui.guarded
def render(day: str | None) -> list[Any]:
    empty, full = store.current().extremes(day)
    return [html.Div([listing("empty", day, empty, "zero_bike_samples", "Empty samples"),
                      listing("full", day, full, "zero_dock_samples", "Full samples")], className="columns")]


callback(Output("extremes-content", "children"), Input("extremes-day", "value"))(render)

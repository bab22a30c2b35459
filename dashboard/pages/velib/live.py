"""Live map: every station at its coordinates, coloured by fill ratio, filterable by zone, refreshed every minute.

The map is a plain Plotly scatter on (lon, lat) with equal-distance aspect, so it renders without any tile
server (the dashboard must work with no internet access).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from dash import Input, Output, callback, dcc, html

from dashboard import store, ui

PATH = "/"
NAME = "Live map"
REFRESH_MS = 60_000
# Red (empty) → yellow → green (full of bikes); spelled out because plotly.js does not know "RdYlGn" by name.
FILL_COLOURS = [[0.0, "#d73027"], [0.25, "#fc8d59"], [0.5, "#fee08b"], [0.75, "#91cf60"], [1.0, "#1a9850"]]

HOVER = ("<b>%{customdata[0]}</b> (%{customdata[1]})<br>%{customdata[2]}<br>"
         "Bikes: %{customdata[3]} (%{customdata[4]} mechanical / %{customdata[5]} e-bike)<br>"
         "Free docks: %{customdata[6]} · capacity %{customdata[7]}<br>"
         "Fill: %{customdata[8]}%<br>Snapshot age: %{customdata[9]}<extra></extra>")


@ui.guarded
def layout(zone: str | None = None, **_query: str) -> html.Div:
    zones = store.current().live_zones()
    warning = None
    if zone is not None and zone not in zones:
        warning = ui.notice(f"Invalid input: unknown zone {zone[:80]!r}; showing every zone.", "invalid")
        zone = None
    return html.Div([
        html.H2(NAME),
        warning,
        html.Div([html.Label("Zone", htmlFor="live-zone"),
                  dcc.Dropdown(id="live-zone", options=zones, value=zone, placeholder="All zones", clearable=True)],
                 className="controls"),
        dcc.Interval(id="live-interval", interval=REFRESH_MS),
        dcc.Loading(html.Div(id="live-content")),
    ])


def fill_ratio(station: dict[str, Any]) -> float:
    capacity = station.get("capacity") or 0
    bikes = (station.get("latest") or {}).get("bikes") or 0
    return min(1.0, bikes / capacity) if capacity > 0 else 0.0


def figure(stations: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """The map as a plain figure dict (plotly's Figure class validates every point: too slow for 1,500)."""
    placed = [s for s in stations if isinstance(s.get("lat"), int | float) and isinstance(s.get("lon"), int | float)]
    customdata = []
    for s in placed:
        latest = s.get("latest") or {}
        customdata.append([
            s.get("name"), s.get("station_code"), s.get("zone"), latest.get("bikes"), latest.get("mechanical"),
            latest.get("ebike"), latest.get("docks_free"), s.get("capacity"), round(100 * fill_ratio(s)),
            ui.fmt_age(latest.get("reported_at"), now),
        ])
    mean_lat = sum(s["lat"] for s in placed) / len(placed) if placed else 48.86
    return {
        "data": [{
            "type": "scattergl", "mode": "markers", "x": [s["lon"] for s in placed], "y": [s["lat"] for s in placed],
            "marker": {"size": 8, "color": [fill_ratio(s) for s in placed], "colorscale": FILL_COLOURS, "cmin": 0,
                       "cmax": 1, "colorbar": {"title": {"text": "bikes / capacity"}, "tickformat": ".0%"},
                       "line": {"width": 0.5, "color": "#555"}},
            "customdata": customdata, "hovertemplate": HOVER,
        }],
        "layout": {
            "height": 620, "margin": {"l": 10, "r": 10, "t": 10, "b": 10}, "plot_bgcolor": "#f4f6f8",
            "dragmode": "pan", "xaxis": {"visible": False},
            "yaxis": {"visible": False, "scaleanchor": "x", "scaleratio": 1 / math.cos(math.radians(mean_lat))},
        },
    }


@ui.guarded
def render(zone: str | None, _tick: int | None = None) -> list[Any]:
    stations = store.current().live_stations(zone or None)
    now = datetime.now(UTC)
    latest = [s.get("latest") or {} for s in stations]
    newest = max((x["reported_at"] for x in latest if isinstance(x.get("reported_at"), datetime)), default=None)

    def total(key: str) -> int:
        return sum(x.get(key) or 0 for x in latest)

    summary = html.Div([
        ui.stat("Stations", len(stations), "live-stations"),
        ui.stat("Bikes", total("bikes"), "live-bikes"),
        ui.stat("Mechanical", total("mechanical"), "live-mechanical"),
        ui.stat("E-bikes", total("ebike"), "live-ebike"),
        ui.stat("Free docks", total("docks_free"), "live-docks"),
        ui.stat("Empty", sum(1 for x in latest if x.get("bikes") == 0), "live-empty"),
        ui.stat("Full", sum(1 for x in latest if x.get("docks_free") == 0), "live-full"),
        ui.stat("Newest snapshot", f"{ui.fmt_age(newest, now)} ago", "live-age"),
    ], className="stats")
    return [summary, dcc.Graph(id="live-map", figure=figure(stations, now), config={"displaylogo": False})]


callback(Output("live-content", "children"), Input("live-zone", "value"), Input("live-interval", "n_intervals"))(render)

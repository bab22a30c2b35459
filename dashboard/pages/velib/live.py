"""Live map: the zones of the shipped boundaries coloured by a chosen metric, every station on top coloured by its
state, a zone filter (dropdown or click on the map), a table of the chosen stations; refreshed every minute.

The map is drawn offline: plain Plotly scatter traces on (lon, lat) with the latitude's aspect ratio, the zone
outlines as filled polygons (`outlines.py`). No tile server, no topojson, no font is fetched: the dashboard must
work with no internet access. A zone is drawn filled when stations stand in it (their `zone`, assigned by the
pipeline from the same boundaries), as an outline when it only lies in the view.

The minute refresh sends only what moves: the browser keeps the figure it drew, and when the map's frame (its
layout, the zones it outlines, the stations with their name, zone, capacity and position) is the one already drawn,
the callback answers with the zones' colours and hover texts, the colour bar, and per station its code, state, counts
and update time, which assets/map.js merges into the figure. The outline points and the stations' fixed details go
once per page view, and again only when the frame changes (another zone chosen, a station added, moved or renamed).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dash import ClientsideFunction, Input, Output, State, callback, clientside_callback, dcc, html, no_update

from dashboard import store, ui
from dashboard.pages.velib import outlines
from dashboard.pages.velib.outlines import Box
from dashboard.store import InvalidInput

PATH = "/"
NAME = "Live map"
REFRESH_MS = 60_000
VIEW_MARGIN = 0.08  # share of the view's width and height added around the stations (or the chosen zone)
Stations = list[dict[str, Any]]

# Colour scales spelled out because plotly.js does not know "RdYlGn" by name. Red = bad for the rider.
FILL_COLOURS = [[0.0, "#d73027"], [0.25, "#fc8d59"], [0.5, "#fee08b"], [0.75, "#91cf60"], [1.0, "#1a9850"]]
EMPTY_COLOURS = [[1 - t, colour] for t, colour in reversed(FILL_COLOURS)]
COUNT_COLOURS = [[0.0, "#f7fbff"], [0.5, "#6baed6"], [1.0, "#08306b"]]


def latest(station: dict[str, Any]) -> dict[str, Any]:
    return station.get("latest") or {}


def total(stations: Stations, key: str) -> int:
    return sum(latest(s).get(key) or 0 for s in stations)


def fill_ratio(stations: Stations) -> float:
    capacity = sum(s.get("capacity") or 0 for s in stations)
    return min(1.0, total(stations, "bikes") / capacity) if capacity > 0 else 0.0


@dataclass(frozen=True)
class Metric:
    """A zone metric of the choropleth: its label, how to compute it from the zone's stations, how to show it."""

    label: str
    value: Callable[[Stations], float]
    colours: list[list[Any]]
    share: bool  # a share in [0, 1] (else a count, scaled to the largest zone)


METRICS = {
    "fill": Metric("Fill ratio (bikes / capacity)", fill_ratio, FILL_COLOURS, True),
    "empty": Metric("Share of empty stations", lambda ss: sum(latest(s).get("bikes") == 0 for s in ss) / len(ss),
                    EMPTY_COLOURS, True),
    "ebike": Metric("E-bikes available", lambda ss: total(ss, "ebike"), COUNT_COLOURS, False),
    "bikes": Metric("Bikes available", lambda ss: total(ss, "bikes"), COUNT_COLOURS, False),
    "docks": Metric("Free docks", lambda ss: total(ss, "docks_free"), COUNT_COLOURS, False),
}
DEFAULT_METRIC = "fill"

STATES = {  # state → (legend label, marker colour), in legend order
    "empty": ("No bike", "#d73027"),
    "few": ("1–2 bikes", "#fc8d59"),
    "ok": ("Bikes and free docks", "#1a9850"),
    "full": ("No free dock", "#4575b4"),
    "closed": ("Closed (not installed or not renting)", "#8c8c8c"),
}


def state(station: dict[str, Any]) -> str:
    now = latest(station)
    if now.get("is_installed") is False or now.get("is_renting") is False:
        return "closed"
    if (now.get("bikes") or 0) == 0:
        return "empty"
    if now.get("docks_free") == 0:
        return "full"
    return "few" if now["bikes"] <= 2 else "ok"


# The station table's columns, filled in the browser from the markers' customdata (`details`, assets/map.js): a
# refresh sends each station once.
TABLE_COLUMNS = [("name", "Station"), ("station_code", "Code"), ("zone", "Zone"), ("state", "State"),
                 ("bikes", "Bikes"), ("mechanical", "Mechanical"), ("ebike", "E-bikes"), ("docks_free", "Free docks"),
                 ("capacity", "Capacity"), ("updated", "Updated")]
COUNTED = ("bikes", "mechanical", "ebike", "docks_free")


STATION_HOVER = ("<b>%{customdata[0]}</b> (%{customdata[1]})<br>%{customdata[2]} · %{customdata[3]}<br>"
                 "Bikes: %{customdata[4]} (%{customdata[5]} mechanical / %{customdata[6]} e-bike)<br>"
                 "Free docks: %{customdata[7]} · capacity %{customdata[8]}<br>"
                 "Updated %{customdata[9]} (%{customdata[10]} ago)<extra></extra>")
# A marker's customdata: where its state's label is (also its trace's meta[2]), and what else a refresh sends of it
# (counts, update time and age); the rest does not move.
STATE_AT, MOVING = 3, (4, 5, 6, 7, 9, 10)


@ui.guarded
def layout(zone: str | None = None, metric: str | None = None, **_query: str) -> html.Div:
    zones = store.current().live_zones()
    warnings = []
    if zone is not None and zone not in zones:
        warnings.append(ui.notice(f"Invalid input: unknown zone {zone[:80]!r}; showing every zone.", "invalid"))
        zone = None
    if metric is not None and metric not in METRICS:
        warnings.append(ui.notice(f"Invalid input: unknown metric {metric[:40]!r}; showing the fill ratio.",
                                  "invalid"))
        metric = None
    return html.Div([
        html.H2(NAME),
        *warnings,
        html.Div([
            html.Label("Zone", htmlFor="live-zone"),
            dcc.Dropdown(id="live-zone", options=zones, value=zone, placeholder="All zones (or click one on the map)",
                         clearable=True),
            html.Label("Colour zones by", htmlFor="live-metric"),
            dcc.Dropdown(id="live-metric", options=[{"label": m.label, "value": k} for k, m in METRICS.items()],
                         value=metric or DEFAULT_METRIC, clearable=False),
        ], className="controls wide"),
        dcc.Interval(id="live-interval", interval=REFRESH_MS),
        dcc.Store(id="live-drawn"),  # the frame of the figure the browser holds (see `frame`)
        dcc.Store(id="live-moved"),  # a refresh's changes to it (see `changes`)
        dcc.Loading(html.Div([
            html.Div(id="live-summary"),  # the totals, or the notice that replaces the page
            html.Div([  # hidden until the first answer, and while the answer is a notice
                dcc.Graph(id="live-map", config={"displaylogo": False, "scrollZoom": True}),
                html.Section([html.H3(id="live-list-title"),
                              ui.table("live-table", [], TABLE_COLUMNS, page_size=15, numeric=(*COUNTED, "capacity"))],
                             className="section"),
            ], id="live-shown", hidden=True),
        ])),
    ])


def colour_at(scale: list[list[Any]], t: float) -> str:
    """The colour at `t` in [0, 1] of a Plotly colour scale of hex colours, interpolated in RGB."""
    t = min(1.0, max(0.0, t))
    for (t0, c0), (t1, c1) in zip(scale, scale[1:], strict=False):
        if t <= t1:
            mix = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
            rgb = [round(int(c0[i:i + 2], 16) * (1 - mix) + int(c1[i:i + 2], 16) * mix) for i in (1, 3, 5)]
            return "#{:02x}{:02x}{:02x}".format(*rgb)
    return scale[-1][1]


def padded(box: Box) -> Box:
    west, south, east, north = box
    dx, dy = max(east - west, 0.005) * VIEW_MARGIN, max(north - south, 0.005) * VIEW_MARGIN
    return west - dx, south - dy, east + dx, north + dy


def bounds(stations: Stations) -> Box:
    lons, lats = [s["lon"] for s in stations], [s["lat"] for s in stations]
    return min(lons), min(lats), max(lons), max(lats)


def shown(value: float, metric: Metric) -> str:
    return f"{100 * value:.0f}%" if metric.share else f"{value:,.0f}"


def zone_traces(placed: Stations, metric: Metric, chosen: str | None, view: Box) -> list[dict[str, Any]]:
    """Filled zones that hold stations (coloured by `metric`), outlines of the other zones in the view, and the
    colour bar (an invisible marker trace: scatter fills have no colour scale of their own)."""
    shapes = outlines.shapes()
    by_zone: dict[str, Stations] = defaultdict(list)
    for station in placed:
        if station.get("zone") in shapes:
            by_zone[station["zone"]].append(station)
    values = {zone: metric.value(stations) for zone, stations in by_zone.items()}
    top = 1.0 if metric.share else max([1.0, *values.values()])
    traces = [{"type": "scatter", "mode": "lines", "x": x, "y": y, "name": shape.zone, "meta": ["outline"],
               "line": {"color": "#b8bec6", "width": 0.6}, "hoverinfo": "skip", "showlegend": False}
              for shape in shapes.values() if shape.zone not in values and shape.meets(view)
              for x, y in [shape.xy()]]
    for zone in sorted(values):
        stations, shape, selected = by_zone[zone], shapes[zone], zone == chosen
        text = (f"<b>{zone}</b> ({shape.commune})<br>{metric.label}: {shown(values[zone], metric)}<br>"
                f"{len(stations)} stations · {total(stations, 'bikes')} bikes ({total(stations, 'ebike')} e-bikes)"
                f" · {total(stations, 'docks_free')} free docks")
        x, y = shape.xy()
        traces.append({
            "type": "scatter", "mode": "lines", "x": x, "y": y, "fill": "toself", "name": zone, "meta": ["zone"],
            "fillcolor": colour_at(metric.colours, values[zone] / top), "opacity": 0.75 if chosen in (None, zone)
            else 0.35, "line": {"color": "#222" if selected else "#fff", "width": 3 if selected else 1},
            "hoveron": "fills", "hoverinfo": "text", "text": text, "showlegend": False,
        })
    west, south, east, north = view
    traces.append({"type": "scatter", "mode": "markers", "x": [west], "y": [south], "meta": ["scale"],
                   "hoverinfo": "skip", "showlegend": False,
                   "marker": {"opacity": 0, "color": [0], "cmin": 0, "cmax": top, "colorscale": metric.colours,
                              "colorbar": {"title": {"text": metric.label, "side": "right"}, "x": 1.0,
                                           "tickformat": ".0%" if metric.share else ",d", "len": 0.7, "y": 0.52}}})
    return traces


def details(station: dict[str, Any], label: str, now: datetime, tz: Any) -> list[Any]:
    """A station as its table row shows it (`TABLE_COLUMNS`, in order), then its age: a marker's customdata."""
    snapshot = latest(station)
    return [station.get("name"), station.get("station_code"), station.get("zone"), label,
            *(snapshot.get(k) for k in COUNTED), station.get("capacity"), ui.fmt_time(snapshot.get("reported_at"), tz),
            ui.fmt_age(snapshot.get("reported_at"), now)]


def station_traces(stations: Stations, now: datetime, tz: Any, size: int) -> list[dict[str, Any]]:
    """One marker trace per station state (the legend toggles them)."""
    by_state: dict[str, Stations] = defaultdict(list)
    for station in stations:
        by_state[state(station)].append(station)
    traces = []
    for key, (label, colour) in STATES.items():
        members = by_state.get(key, [])
        traces.append({"type": "scatter", "mode": "markers", "name": f"{label} ({len(members)})",
                       "meta": ["stations", key, label],
                       "x": [s["lon"] for s in members], "y": [s["lat"] for s in members],
                       "marker": {"size": size, "color": colour, "line": {"width": 0.7, "color": "#333"}},
                       "customdata": [details(s, label, now, tz) for s in members], "hovertemplate": STATION_HOVER})
    return traces


def figure(stations: Stations, zone: str | None, metric: Metric, now: datetime, tz: Any) -> dict[str, Any]:
    """The map as a plain figure dict (plotly's Figure class validates every point: too slow for 1,500)."""
    placed = [s for s in stations if isinstance(s.get("lat"), int | float) and isinstance(s.get("lon"), int | float)]
    chosen = [s for s in placed if zone is None or s.get("zone") == zone]
    view = padded(bounds(placed)) if placed else (2.22, 48.80, 2.47, 48.91)
    shape = outlines.shapes().get(zone or "")
    focus = padded(shape.bbox) if shape else padded(bounds(chosen)) if zone and chosen else view
    mid_lat = (focus[1] + focus[3]) / 2
    return {
        "data": [*zone_traces(placed, metric, zone, view), *station_traces(chosen, now, tz, 9 if zone else 6)],
        "layout": {
            "height": 640, "margin": {"l": 10, "r": 10, "t": 10, "b": 10}, "plot_bgcolor": "#f4f6f8",
            "dragmode": "pan", "hovermode": "closest", "uirevision": zone or "all",
            "legend": {"x": 0.01, "y": 0.01, "xanchor": "left", "yanchor": "bottom", "bgcolor": "rgba(255,255,255,.8)"},
            "xaxis": {"visible": False, "range": [focus[0], focus[2]]},
            "yaxis": {"visible": False, "range": [focus[1], focus[3]], "scaleanchor": "x",
                      "scaleratio": 1 / math.cos(math.radians(mid_lat))},
        },
    }


@dataclass(frozen=True)
class View:
    """What the page shows of the live stations: the totals, the map's figure, the title of the station table (the
    browser fills the table from the figure's markers)."""

    summary: html.Div
    figure: dict[str, Any]
    title: str


@ui.guarded
def render(zone: str | None, metric: str | None) -> View:
    s = store.current()
    if metric not in METRICS:
        raise InvalidInput(f"unknown metric {str(metric)[:40]!r}")
    stations = s.live_stations()
    if zone:
        zone = s.check_zone(zone)
        chosen = [st for st in stations if st.get("zone") == zone]
    else:
        zone, chosen = None, stations
    now, tz = datetime.now(UTC), s.settings.tz
    newest = max((x["reported_at"] for x in map(latest, chosen) if isinstance(x.get("reported_at"), datetime)),
                 default=None)
    summary = html.Div([
        ui.stat("Stations", len(chosen), "live-stations"),
        ui.stat("Bikes", total(chosen, "bikes"), "live-bikes"),
        ui.stat("Mechanical", total(chosen, "mechanical"), "live-mechanical"),
        ui.stat("E-bikes", total(chosen, "ebike"), "live-ebike"),
        ui.stat("Free docks", total(chosen, "docks_free"), "live-docks"),
        ui.stat("Empty", sum(1 for x in map(latest, chosen) if x.get("bikes") == 0), "live-empty"),
        ui.stat("Full", sum(1 for x in map(latest, chosen) if x.get("docks_free") == 0), "live-full"),
        ui.stat("Newest snapshot", f"{ui.fmt_age(newest, now)} ago", "live-age"),
    ], className="stats")
    return View(summary, figure(stations, zone, METRICS[metric], now, tz),
                f"Stations of {zone}" if zone else "All stations")


def frame(fig: dict[str, Any]) -> str:
    """A digest of what a refresh does not send: the layout (view, chosen zone), the kind and name of every zone
    trace in order, and each station's position and fixed details (name, code, zone, capacity)."""
    zones = [(t["meta"][0], t.get("name")) for t in fig["data"] if t["meta"][0] != "stations"]
    fixed = sorted(([x, y, *(d for i, d in enumerate(details) if i != STATE_AT and i not in MOVING)]
                    for t in fig["data"] if t["meta"][0] == "stations"
                    for details, x, y in zip(t["customdata"], t["x"], t["y"], strict=True)), key=str)
    return hashlib.sha1(json.dumps([fig["layout"], zones, fixed], default=str).encode()).hexdigest()[:16]


def changes(fig: dict[str, Any]) -> dict[str, Any]:
    """What a refresh sends of `fig` to a browser holding a figure of the same frame: per filled zone its trace
    index, colour and hover text; the colour bar (the scale trace's marker); each station trace without its points,
    and per station its code then its `MOVING` details. assets/map.js (`refreshMap`) takes the rest from the figure
    it holds."""
    zones, traces = [], []
    for index, trace in enumerate(fig["data"]):
        kind = trace["meta"][0]
        if kind == "zone":
            zones.append([index, trace["fillcolor"], trace["text"]])
        elif kind == "scale":
            traces.append([index, {"marker": trace["marker"]}])
        elif kind == "stations":
            rows = [[d[1], *(d[i] for i in MOVING)] for d in trace["customdata"]]
            traces.append([index, {**{k: v for k, v in trace.items() if k not in ("x", "y", "customdata")},
                                   "rows": rows}])
    return {"state_at": STATE_AT, "moving": MOVING, "zones": zones, "traces": traces}


@callback(Output("live-summary", "children"), Output("live-map", "figure"), Output("live-drawn", "data"),
          Output("live-moved", "data"), Output("live-list-title", "children"), Output("live-shown", "hidden"),
          Input("live-zone", "value"), Input("live-metric", "value"), Input("live-interval", "n_intervals"),
          State("live-drawn", "data"))
def refresh(zone: str | None, metric: str | None, _tick: int | None, drawn: str | None) -> tuple[Any, ...]:
    """The page's answer to a zone or metric choice and to every minute: the whole figure when the browser holds
    none of this frame, else only its changes."""
    view = render(zone, metric)
    if not isinstance(view, View):  # a notice (no data, invalid input, MongoDB down) in place of the whole page
        return view, {}, None, no_update, "", True
    now_drawn = frame(view.figure)
    if drawn == now_drawn:
        return view.summary, no_update, no_update, {**changes(view.figure), "frame": drawn}, view.title, False
    return view.summary, view.figure, now_drawn, no_update, view.title, False


clientside_callback(ClientsideFunction("cronlake", "refreshMap"), Output("live-map", "figure", allow_duplicate=True),
                    Input("live-moved", "data"), State("live-map", "figure"), State("live-drawn", "data"),
                    prevent_initial_call=True)
clientside_callback(ClientsideFunction("cronlake", "stationRows"), Output("live-table", "data"),
                    Input("live-map", "figure"), State("live-table", "columns"))

# A click on a zone (or on a station, for its zone) selects it in the dropdown, in the browser (assets/map.js).
clientside_callback(ClientsideFunction("cronlake", "zoneOfClick"), Output("live-zone", "value"),
                    Input("live-map", "clickData"), State("live-map", "figure"), State("live-zone", "options"),
                    prevent_initial_call=True)

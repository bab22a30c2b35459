"""Station: pick a station (searchable), see its daily history, today's live averages and the model's prediction."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from dash import Input, Output, callback, dcc, html

from cronlake.contracts.velib import LIVE_STATION, PREDICTIONS, STATION_DAILY
from dashboard import store, ui
from dashboard.store import InvalidInput, NoData

PATH = "/station"
NAME = "Station"

HISTORY_COLUMNS = [
    ("day", "Day"), ("samples", "Samples"), ("avg_bikes", "Avg bikes"), ("min_bikes", "Min bikes"),
    ("max_bikes", "Max bikes"), ("avg_mechanical", "Avg mechanical"), ("avg_ebike", "Avg e-bikes"),
    ("avg_docks_free", "Avg free docks"), ("min_docks_free", "Min free docks"), ("max_docks_free", "Max free docks"),
    ("zero_bike_samples", "Empty samples"), ("zero_dock_samples", "Full samples"),
]
AVERAGES = (("avg_mechanical", "Avg mechanical"), ("avg_ebike", "Avg e-bikes"), ("avg_docks_free", "Avg free docks"))


@ui.guarded
def layout(station: str | None = None, **_query: str) -> html.Div:
    s = store.current()
    options = [{"label": f"{o.get('name') or '?'} ({o['station_code']}) — {o.get('zone') or '?'}",
                "value": o["station_code"]} for o in s.station_options()]
    warning = None
    if station is not None:
        try:
            s.check_station(station)
        except InvalidInput as exc:
            warning, station = ui.notice(f"Invalid input: {exc}; showing the first station.", "invalid"), None
    return html.Div([
        html.H2(NAME),
        warning,
        html.Div([html.Label("Station", htmlFor="station-picker"),
                  dcc.Dropdown(id="station-picker", options=options, value=station or options[0]["value"],
                               searchable=True, clearable=False, placeholder="Type a name or code")],
                 className="controls wide"),
        dcc.Loading(html.Div(id="station-content")),
    ])


def history_figure(rows: list[dict[str, Any]]) -> go.Figure:
    days = [r["day"] for r in rows]
    fig = go.Figure([
        go.Scatter(x=days, y=[r.get("max_bikes") for r in rows], name="max bikes", mode="lines",
                   line={"width": 0}, showlegend=False),
        go.Scatter(x=days, y=[r.get("min_bikes") for r in rows], name="min–max bikes", mode="lines",
                   line={"width": 0}, fill="tonexty", fillcolor="rgba(44,120,200,0.18)"),
        go.Scatter(x=days, y=[r.get("avg_bikes") for r in rows], name="avg bikes", mode="lines+markers",
                   line={"color": "#2c78c8"}),
        go.Scatter(x=days, y=[r.get("avg_docks_free") for r in rows], name="avg free docks", mode="lines+markers",
                   line={"color": "#d98c1f", "dash": "dot"}),
    ])
    fig.update_layout(height=320, margin={"l": 40, "r": 10, "t": 10, "b": 40}, hovermode="x unified",
                      xaxis={"type": "category"}, legend={"orientation": "h", "y": -0.2})
    return fig


def averages(block: dict[str, Any] | None, prefix: str) -> list[html.Div]:
    block = block or {}
    return [ui.stat("Samples", block.get("samples", "—"), f"{prefix}-samples")] + [
        ui.stat(label, ui.num(block.get(field), 1) if block.get(field) is not None else "—", f"{prefix}-{field}")
        for field, label in AVERAGES
    ]


def live_section(live: dict[str, Any] | None, tz: Any) -> html.Section:
    if live is None:
        return ui.section("Live", ui.no_data(NoData(LIVE_STATION)))
    latest = live.get("latest") or {}
    today = live.get("today") or {}
    return ui.section(
        "Live",
        html.Div([ui.stat("Bikes now", latest.get("bikes", "—"), "station-bikes"),
                  ui.stat("Mechanical", latest.get("mechanical", "—")), ui.stat("E-bikes", latest.get("ebike", "—")),
                  ui.stat("Free docks", latest.get("docks_free", "—")),
                  ui.stat("Snapshot", ui.fmt_time(latest.get("reported_at"), tz)),
                  ui.stat("Age", ui.fmt_age(latest.get("reported_at")))], className="stats"),
        html.H4(f"Today ({today.get('day', '—')})"),
        html.Div(averages(today, "station-today"), className="stats"),
        html.H4("Last hour"),
        html.Div(averages(live.get("last_hour"), "station-hour"), className="stats"),
    )


def prediction_section(prediction: dict[str, Any] | None, tz: Any) -> html.Section:
    if prediction is None:
        return ui.section("Prediction", ui.no_data(NoData(PREDICTIONS)))
    probability = prediction.get("probability_full")
    return ui.section("Prediction", html.Div([
        ui.stat("P(full)", f"{100 * probability:.1f}%" if probability is not None else "—", "station-probability"),
        ui.stat("Predicted full", "yes" if prediction.get("predicted_full") else "no", "station-predicted"),
        ui.stat("For", ui.fmt_time(prediction.get("at"), tz)),
        ui.stat("Model version", prediction.get("model_version", "—"), "station-model-version"),
    ], className="stats"))


@ui.guarded
def render(code: str | None) -> Any:
    if not code:
        return ui.notice("Pick a station.", "hint")
    s = store.current()
    history = s.station_history(code)
    live = s.station_live(code)
    tz = s.settings.tz
    about = live or (history[-1] if history else {})
    header = html.P(f"{about.get('name', '?')} · code {code} · {about.get('zone', '?')} · "
                    f"capacity {about.get('capacity', '?')}", id="station-title", className="lead")
    if history:
        rows = [{**r, **{f: ui.num(r.get(f), 2) for f in ("avg_bikes", "avg_mechanical", "avg_ebike",
                                                        "avg_docks_free")}} for r in history]
        daily = ui.section("Daily history", dcc.Graph(figure=history_figure(history), config={"displaylogo": False}),
                           ui.table("station-history", rows, HISTORY_COLUMNS, page_size=31))
    else:
        daily = ui.section("Daily history", ui.no_data(NoData(STATION_DAILY)))
    return [header, html.Div([live_section(live, tz), prediction_section(s.station_prediction(code), tz)],
                             className="columns"), daily]


callback(Output("station-content", "children"), Input("station-picker", "value"))(render)

"""Model: metrics of the latest training run against the naive baseline (table, bars and the precision–recall curve
of the test period with the baseline's point and the chosen threshold), and the stations predicted full next."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from dash import Input, Output, callback, dcc, html

from dashboard import store, ui

PATH = "/model"
NAME = "Model"
METRICS = ("auc", "pr_auc", "precision", "recall", "f1")
PREDICTION_COLUMNS = [
    ("station_code", "Code"), ("name", "Name"), ("zone", "Zone"), ("probability_pct", "P(full) %"),
    ("predicted", "Predicted full"), ("at", "For"), ("model_version", "Model version"),
]
METRIC_COLUMNS = [("metric", "Metric"), ("model", "Model"), ("baseline", "Baseline"), ("gain", "Model − baseline")]


def layout(**_query: str) -> html.Div:
    return html.Div([html.H2(NAME), dcc.Interval(id="model-interval", interval=300_000),
                     dcc.Loading(html.Div(id="model-content"))])


def metric_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    model, baseline = metrics.get("model") or {}, metrics.get("baseline") or {}
    rows = []
    for name in METRICS:
        m, b = model.get(name), baseline.get(name)
        gain = m - b if m is not None and b is not None else None
        rows.append({"metric": name, "model": ui.num(m, 3), "baseline": ui.num(b, 3), "gain": ui.num(gain, 3)})
    return rows


def metrics_chart(rows: list[dict[str, Any]]) -> go.Figure:
    fig = go.Figure([go.Bar(name=who, x=[r["metric"] for r in rows], y=[r[who] for r in rows], marker_color=colour)
                     for who, colour in (("model", "#2c78c8"), ("baseline", "#a0a7b0"))])
    fig.update_layout(barmode="group", height=300, margin={"l": 40, "r": 10, "t": 10, "b": 30},
                      yaxis={"range": [0, 1]})
    return fig


def pr_chart(curve: list[dict[str, Any]], metrics: dict[str, Any], threshold: float | None) -> go.Figure:
    """The model's precision–recall curve over its thresholds, its operating point and the baseline's point."""
    model, baseline = metrics.get("model") or {}, metrics.get("baseline") or {}
    fig = go.Figure([
        go.Scatter(name="model (thresholds)", x=[p["recall"] for p in curve], y=[p["precision"] for p in curve],
                   mode="lines+markers", marker={"size": 4, "color": "#2c78c8"},
                   customdata=[p["threshold"] for p in curve],
                   hovertemplate="threshold %{customdata:.2f}<br>recall %{x:.3f}<br>precision %{y:.3f}<extra></extra>"),
        go.Scatter(name=f"model at threshold {threshold if threshold is not None else '—'}",
                   x=[model.get("recall")], y=[model.get("precision")], mode="markers",
                   marker={"size": 12, "color": "#2c78c8", "symbol": "star"}),
        go.Scatter(name="baseline: full at t-1", x=[baseline.get("recall")], y=[baseline.get("precision")],
                   mode="markers", marker={"size": 12, "color": "#a0a7b0", "symbol": "diamond"}),
    ])
    fig.update_layout(height=320, margin={"l": 50, "r": 10, "t": 10, "b": 40},
                      xaxis={"title": "recall", "range": [0, 1]}, yaxis={"title": "precision", "range": [0, 1]},
                      legend={"x": 0.55, "y": 0.98})
    return fig


@ui.guarded
def run_section() -> html.Section:
    s = store.current()
    run = s.latest_model_run()
    rows = metric_rows(run.get("metrics") or {})
    tz = s.settings.tz
    return ui.section(
        "Latest training run",
        html.Div([ui.stat("Version", run.get("version", "—"), "model-version"),
                  ui.stat("Trained", ui.fmt_time(run.get("trained_at"), tz)),
                  ui.stat("Train until", ui.fmt_when(run.get("train_until"), tz)),
                  ui.stat("Test from", ui.fmt_when(run.get("test_from"), tz)),
                  ui.stat("Rows train / test", f"{run.get('rows_train', '—')} / {run.get('rows_test', '—')}"),
                  ui.stat("Threshold (chosen on validation)", run.get("threshold", "—"), "model-threshold")],
                 className="stats"),
        html.Div([ui.table("model-metrics", rows, METRIC_COLUMNS),
                  dcc.Graph(figure=metrics_chart(rows), config={"displaylogo": False})], className="columns"),
        html.H3("Precision–recall on the test period"),
        dcc.Graph(id="model-pr-curve", figure=pr_chart(run.get("pr_curve") or [], run.get("metrics") or {},
                                                        run.get("threshold")), config={"displaylogo": False}),
    )


@ui.guarded
def predictions_section() -> html.Section:
    s = store.current()
    rows = s.top_predictions()
    shown = [{**r, "probability_pct": ui.share(r.get("probability_full"), 1),
              "predicted": "yes" if r.get("predicted_full") else "no", "at": ui.fmt_time(r.get("at"), s.settings.tz)}
             for r in rows]
    return ui.section(f"Stations most likely full next (top {len(rows)})",
                      ui.table("model-predictions", shown, PREDICTION_COLUMNS, page_size=30))


@ui.guarded
def render(_tick: int | None = None) -> list[Any]:
    store.current().ping()
    return [run_section(), predictions_section()]


callback(Output("model-content", "children"), Input("model-interval", "n_intervals"))(render)

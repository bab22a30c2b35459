"""Churn: customers scored live, the risk distribution, the customers most at risk with their drivers, risk by
contract, tenure and monthly charges, the promoted model with its metrics, and produce→scored latency."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go
from dash import Input, Output, callback, dcc, html

from cronlake.contracts.churn import CHARGE_BANDS, TENURE_BANDS, band
from dashboard import store, ui
from dashboard.pages.churn import queries

PATH = "/churn"
NAME = "Churn"
METRICS = ("auc", "pr_auc", "precision", "recall", "f1")
TOP_COLUMNS = [("customer_id", "Customer"), ("risk_pct", "Churn risk %"), ("contract", "Contract"),
               ("tenure", "Tenure (months)"), ("monthly_charges", "Monthly charges"), ("drivers_text", "Drivers"),
               ("model_version", "Model version")]
METRIC_COLUMNS = [("metric", "Metric"), ("model", "Model"), ("baseline", "Baseline (month-to-month)")]
GROUP_COLUMNS = [("group", "Group"), ("customers", "Customers"), ("avg_risk_pct", "Average risk %"),
                 ("predicted_pct", "Predicted to churn %")]


def layout(**_query: str) -> html.Div:
    return html.Div([html.H2(NAME), dcc.Interval(id="churn-interval", interval=5_000),
                     html.Div(id="churn-content")])


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def grouped(rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], str | None]) -> list[dict[str, Any]]:
    """Average risk and share predicted to churn per group, in the groups' natural order."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[key(row) or "unknown"].append(row)
    return [{"group": name, "customers": len(members),
             "avg_risk_pct": ui.num(100 * sum(m["churn_probability"] for m in members) / len(members), 1),
             "predicted_pct": ui.share(sum(1 for m in members if m["predicted_churn"]), len(members))}
            for name, members in groups.items()]


def histogram(rows: list[dict[str, Any]]) -> go.Figure:
    fig = go.Figure(go.Histogram(x=[100 * r["churn_probability"] for r in rows], xbins={"start": 0, "end": 100,
                                                                                       "size": 5},
                                 marker_color="#c8452c"))
    fig.update_layout(height=260, margin={"l": 40, "r": 10, "t": 10, "b": 40},
                      xaxis={"title": "churn risk %"}, yaxis={"title": "customers"})
    return fig


def group_chart(rows: list[dict[str, Any]]) -> go.Figure:
    fig = go.Figure(go.Bar(x=[r["group"] for r in rows], y=[r["avg_risk_pct"] for r in rows],
                           marker_color="#2c78c8"))
    fig.update_layout(height=220, margin={"l": 40, "r": 10, "t": 10, "b": 40}, yaxis={"title": "average risk %"})
    return fig


def drivers_text(drivers: list[dict[str, Any]] | None) -> str:
    return "; ".join(f"{d['feature']} = {d['value']} ({100 * d['churn_rate']:.0f} % churn)" for d in drivers or [])


@ui.guarded
def scoring_section() -> html.Section:
    s = store.current()
    rows = queries.scored(s)
    latencies = [r["latency_ms"] for r in rows if r.get("latency_ms") is not None]
    latest = max(r["scored_at"] for r in rows)
    versions = sorted({r["model_version"] for r in rows})
    by = {"contract": lambda r: r.get("contract"),
          "tenure": lambda r: band(r.get("tenure"), TENURE_BANDS),
          "charges": lambda r: band(r.get("monthly_charges"), CHARGE_BANDS)}
    groups = {name: sorted(grouped(rows, key), key=lambda g: g["group"]) for name, key in by.items()}
    return ui.section(
        "Live scoring",
        html.Div([ui.stat("Customers scored", len(rows), "churn-scored"),
                  ui.stat("Predicted to churn", sum(1 for r in rows if r["predicted_churn"]), "churn-predicted"),
                  ui.stat("Latency p50 / p95 (ms)", f"{ui.num(percentile(latencies, 0.5), 0)} / "
                          f"{ui.num(percentile(latencies, 0.95), 0)}", "churn-latency"),
                  ui.stat("Last scored", ui.fmt_time(latest, s.settings.tz)),
                  ui.stat("Versions in use", ", ".join(versions), "churn-versions")], className="stats"),
        dcc.Graph(id="churn-histogram", figure=histogram(rows), config={"displaylogo": False}),
        html.Div([html.Div([html.H4(f"By {name}"), ui.table(f"churn-by-{name}", group, GROUP_COLUMNS),
                            dcc.Graph(figure=group_chart(group), config={"displaylogo": False})])
                  for name, group in groups.items()], className="columns"),
    )


@ui.guarded
def top_section() -> html.Section:
    rows = queries.top_at_risk(store.current())
    shown = [{**r, "risk_pct": ui.num(100 * r["churn_probability"], 1), "tenure": ui.num(r.get("tenure"), 0),
              "drivers_text": drivers_text(r.get("drivers"))} for r in rows]
    return ui.section(f"Customers most at risk (top {len(rows)})", ui.table("churn-top", shown, TOP_COLUMNS))


@ui.guarded
def model_section() -> html.Section:
    s = store.current()
    run = queries.promoted_run(s)
    metrics = run.get("metrics") or {}
    rows = [{"metric": name, "model": ui.num((metrics.get("model") or {}).get(name), 3),
             "baseline": ui.num((metrics.get("baseline") or {}).get(name), 3)} for name in METRICS]
    return ui.section(
        "Model",
        html.Div([ui.stat("Promoted version", run.get("version", "—") if run.get("promoted") else "none",
                          "churn-model-version"),
                  ui.stat("Trained", ui.fmt_time(run.get("trained_at"), s.settings.tz)),
                  ui.stat("Threshold", run.get("threshold", "—")),
                  ui.stat("Training data", str(run.get("data_sha256", "—"))[:12])], className="stats"),
        ui.table("churn-metrics", rows, METRIC_COLUMNS),
    )


@ui.guarded
def render(_tick: int | None = None) -> list[Any]:
    store.current().ping()
    return [scoring_section(), top_section(), model_section()]


callback(Output("churn-content", "children"), Input("churn-interval", "n_intervals"))(render)

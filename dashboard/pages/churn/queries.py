"""Every MongoDB read of the churn page: projected, read-only queries on `churn_predictions` and `churn_model_runs`.

Nothing here writes: the stream and the training job create the collections and their indexes (see
`cronlake/contracts/churn.py`). An empty collection raises `NoData` naming the command that fills it.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING

from cronlake.contracts.churn import MODEL_RUNS, PREDICTIONS
from dashboard.store import NoData, Store, projection

SCORED_FIELDS = ("churn_probability", "predicted_churn", "contract", "tenure", "monthly_charges", "latency_ms",
                 "model_version", "scored_at")
TOP_FIELDS = ("customer_id", "churn_probability", "contract", "tenure", "monthly_charges", "drivers",
              "model_version", "scored_at")
RUN_FIELDS = ("version", "trained_at", "threshold", "metrics", "rows", "data_sha256", "promoted", "promoted_at")


def scored(store: Store) -> list[dict[str, Any]]:
    """What the page aggregates, one small document per scored customer."""
    rows = list(store.data[PREDICTIONS.name].find({}, projection(SCORED_FIELDS)))
    if not rows:
        raise NoData(PREDICTIONS)
    return rows


def top_at_risk(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    """The riskiest customers first; equal probabilities (a forest gives many) by customer id, so the list is stable."""
    cursor = store.data[PREDICTIONS.name].find({}, projection(TOP_FIELDS))
    return list(cursor.sort([("churn_probability", DESCENDING), ("customer_id", ASCENDING)]).limit(limit))


def promoted_run(store: Store) -> dict[str, Any]:
    """The promoted model's training run (the latest run when none is promoted yet)."""
    runs = store.data[MODEL_RUNS.name]
    doc = runs.find_one({"promoted": True}, projection(RUN_FIELDS)) or runs.find_one(
        {}, projection(RUN_FIELDS), sort=[("trained_at", DESCENDING)])
    if doc is None:
        raise NoData(MODEL_RUNS)
    return doc

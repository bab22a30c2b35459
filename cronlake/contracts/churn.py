"""The churn pipeline's contracts: its topic setting, the customer record, the model layout and MongoDB collections.

The customer record is the IBM Telco CSV row, column for column (`customerID` … `Churn`). On Kafka a customer is
the CSV row as a JSON object of its cells, as text (so the stream and a batch read of the CSV prepare the very same
strings); `parse_message` checks one against the record type. `TotalCharges` is blank for the 11 customers of
tenure 0: it is optional, and a cell of blanks counts as empty. `Churn` (the label) is optional on the topic.
"""

from __future__ import annotations

import json
from typing import Any

from cronlake.core.contracts import Collection, Field, RecordError, RecordType
from cronlake.core.settings import Settings, check_topic_name

DEFAULT_TOPIC = "churn.customers"
MODEL = "churn_rf"
MODELS_PATH = f"models/{MODEL}"
POINTER_PATH = f"{MODELS_PATH}/promoted.json"
QUARANTINE_PATH = "quarantine/churn"
TRAINING_INPUT = "landing/churn/telco_customer_churn.csv"
KEY = "customerID"

SERVICES = ("MultipleLines", "InternetService", "OnlineSecurity", "OnlineBackup", "DeviceProtection", "TechSupport",
            "StreamingTV", "StreamingMovies")
CATEGORICAL = ("gender", "Partner", "Dependents", "PhoneService", *SERVICES, "Contract", "PaperlessBilling",
               "PaymentMethod")
NUMERIC = ("SeniorCitizen", "tenure", "MonthlyCharges", "TotalCharges")
# The bands tenure and monthly charges are read in, for drivers and for the dashboard's risk groups.
TENURE_BANDS = ((12, "0-11 months"), (24, "12-23 months"), (48, "24-47 months"), (None, "48+ months"))
CHARGE_BANDS = ((35.0, "< 35"), (70.0, "35-70"), (90.0, "70-90"), (None, "90+"))

CUSTOMER = RecordType("churn_customer", (
    Field(KEY, non_empty=True),
    Field("gender", non_empty=True),
    Field("SeniorCitizen", "int", minimum=0),
    *(Field(name, non_empty=True) for name in ("Partner", "Dependents")),
    Field("tenure", "int", minimum=0),
    Field("PhoneService", non_empty=True),
    *(Field(name, non_empty=True) for name in SERVICES),
    Field("Contract", non_empty=True),
    Field("PaperlessBilling", non_empty=True),
    Field("PaymentMethod", non_empty=True),
    Field("MonthlyCharges", "double", minimum=0),
    Field("TotalCharges", "double", optional=True, minimum=0),
    Field("Churn", optional=True),
))

PREDICTIONS = Collection(
    "churn_predictions", key=("customer_id",),
    fields=("customer_id", "churn_probability", "predicted_churn", "model_version", "partition", "offset",
            "produced_at", "scored_at", "latency_ms", "contract", "tenure", "monthly_charges", "total_charges",
            "internet_service", "payment_method", "drivers"),
    produced_by="churn_stream",
    indexes=(("-churn_probability",), ("-scored_at",), ("model_version",), ("contract",)),
)
MODEL_RUNS = Collection(
    "churn_model_runs", key=("version",),
    fields=("version", "trained_at", "path", "data_sha256", "rows", "seed", "threshold", "metrics", "features",
            "params", "promoted", "promoted_at"),
    produced_by="churn_train",
    indexes=(("-trained_at",),),
)


def topic(settings: Settings) -> str:
    """`CRONLAKE_CHURN_TOPIC`: the Kafka topic of customer rows, keyed by customer id."""
    return settings.get("CRONLAKE_CHURN_TOPIC", DEFAULT_TOPIC, check_topic_name)


def model_path(version: str) -> str:
    """The lake folder of one model version: the Spark pipeline in `pipeline/`, `manifest.json` beside it."""
    return f"{MODELS_PATH}/{version}"


def band(value: float | None, bands: tuple[tuple[float | None, str], ...]) -> str | None:
    """The label of the first band whose upper bound (exclusive) is above `value`; None for no value."""
    if value is None:
        return None
    return next(label for bound, label in bands if bound is None or value < bound)


def parse_message(value: str | None) -> dict[str, str]:
    """A Kafka message value → the customer's CSV cells (text, blanks stripped); RecordError saying why not."""
    if value is None:
        raise RecordError("empty message")
    try:
        cells = json.loads(value)
    except ValueError:
        raise RecordError("not JSON") from None
    if not isinstance(cells, dict):
        raise RecordError("not a JSON object")
    clean: dict[str, str] = {}
    for name in CUSTOMER.names:
        cell: Any = cells.get(name, "" if CUSTOMER.field(name).optional else None)
        if cell is None:
            raise RecordError(f"missing column {name}")
        if not isinstance(cell, str):
            raise RecordError(f"{name} is not text: {cell!r}")
        clean[name] = cell.strip()
    CUSTOMER.from_csv_row(clean)
    return clean

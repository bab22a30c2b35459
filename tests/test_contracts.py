"""Record types: the CSV codec round-trips every kind of field and refuses what does not fit, and the Spark
schema, the CSV header and the codec all come from the one declaration."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cronlake.contracts import retail, velib
from cronlake.core.contracts import Collection, Field, RecordError, RecordType

SAMPLE = RecordType("sample", (
    Field("code", non_empty=True), Field("label"), Field("count", "int", minimum=0), Field("total", "long"),
    Field("ratio", "double", optional=True), Field("flag", "bool"), Field("at", "timestamp"),
    Field("note", optional=True),
))


def test_every_kind_round_trips_through_csv_cells() -> None:
    records = [
        {"code": "A1", "label": "", "count": 0, "total": 2**40, "ratio": 0.125, "flag": True,
         "at": "2024-05-28T20:04:00Z", "note": "x"},
        {"code": "B2", "label": "Gare de l'Est, quai 3", "count": 7, "total": -3, "ratio": None, "flag": False,
         "at": "2024-05-28T20:04:00+02:00", "note": None},
    ]
    for record in records:
        cells = SAMPLE.to_csv_row(record)
        assert all(isinstance(cell, str) for cell in cells)
        assert SAMPLE.from_csv_row(cells) == record
        assert SAMPLE.from_csv_row(dict(zip(SAMPLE.csv_header(), cells, strict=True))) == record
    assert SAMPLE.to_csv_row(records[1])[SAMPLE.names.index("ratio")] == ""
    moment = {**records[0], "at": datetime(2024, 5, 28, 18, 4, tzinfo=UTC)}
    assert SAMPLE.to_csv_row(moment)[SAMPLE.names.index("at")] == "2024-05-28T18:04:00Z"


@pytest.mark.parametrize(("column", "cell", "reason"), [
    ("code", "", "missing code"),
    ("count", "-1", "negative count"),
    ("count", "1.5", "count is not an integer"),
    ("ratio", "half", "ratio is not a number"),
    ("flag", "yes", "flag is not true/false"),
    ("at", "2024-05-28 20:04", "at has no UTC offset"),
    ("at", "tomorrow", "at is not an ISO-8601 time"),
    ("total", "", "missing total"),
])
def test_cells_that_do_not_fit_are_refused_with_the_field_named(column: str, cell: str, reason: str) -> None:
    good = SAMPLE.to_csv_row({"code": "A1", "label": "", "count": 1, "total": 1, "ratio": None, "flag": True,
                              "at": "2024-05-28T20:04:00Z", "note": None})
    cells = list(good)
    cells[SAMPLE.names.index(column)] = cell
    with pytest.raises(RecordError, match=reason):
        SAMPLE.from_csv_row(cells)
    with pytest.raises(RecordError, match="missing column note"):
        SAMPLE.from_csv_row(dict(zip(SAMPLE.names[:-1], good, strict=False)))


def test_schema_header_and_dataset_come_from_one_declaration() -> None:
    assert SAMPLE.spark_schema() == ("code STRING, label STRING, count INT, total BIGINT, ratio DOUBLE, "
                                     "flag BOOLEAN, at TIMESTAMP, note STRING")
    assert SAMPLE.spark_schema(text_timestamps=True, extra=("_corrupt_record STRING",)).endswith(
        "at STRING, note STRING, _corrupt_record STRING")
    assert velib.STATUS.column_names == [*velib.STATION.names, "day"]
    assert velib.STATUS.partition_by == ("day",) and velib.STATUS.path == "processed/velib_status"
    assert retail.TRANSACTION.csv_header() == ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate",
                                               "UnitPrice", "CustomerID", "Country", "TotalPrice"]


def test_collections_hold_their_key_and_index_fields() -> None:
    for collection in (*velib.COLLECTIONS, retail.DAILY):
        named = set(collection.fields) | {"_id"}
        assert set(collection.key) <= named, collection.name
        assert {f.removeprefix("-") for fields in collection.indexes for f in fields} <= named, collection.name


def test_an_index_that_repeats_the_unique_key_is_refused() -> None:
    """Real MongoDB refuses a second index on the unique key's fields with other options (nx-27017 lets it pass
    silently), so a contract declaring one would fail its writer only in the compose deployment."""
    with pytest.raises(ValueError, match="repeats the unique key"):
        Collection("visits", key=("site", "day"), fields=("site", "day", "hits"), produced_by="a job",
                   indexes=(("site", "-day"),))
    assert Collection("visits", key=("site", "day"), fields=("site", "day", "hits"), produced_by="a job",
                      indexes=(("day",),)).indexes == (("day",),)

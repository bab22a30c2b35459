"""Shared building blocks of the dashboard pages: state messages, sortable tables, number and time formatting.

`guarded` wraps every page renderer so that an empty collection, an invalid input or a MongoDB outage
becomes a readable message in the page instead of a traceback (or Dash's error toast).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from dash import dash_table, dcc, html
from pymongo.errors import PyMongoError

from cronlake.core.contracts import Collection
from dashboard import store
from dashboard.store import InvalidInput, NoData

Column = tuple[str, str]  # (field, header)


def no_data(exc: NoData) -> html.Div:
    commands: list[Any] = []
    for command in exc.commands:
        commands += [" or ", html.Code(command)] if commands else [html.Code(command)]
    return html.Div(
        ["No data yet — run ", *commands, f" (it fills {exc.collection})."],
        className="notice no-data", **{"data-collection": exc.collection},
    )


def notice(text: str, kind: str) -> html.Div:
    return html.Div(text, className=f"notice {kind}")


def guarded(render: Callable[..., Any]) -> Callable[..., Any]:
    """Turn NoData / InvalidInput / MongoDB errors raised by `render` into a message component."""

    @wraps(render)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return render(*args, **kwargs)
        except NoData as exc:
            return no_data(exc)
        except InvalidInput as exc:
            return notice(f"Invalid input: {exc}", "invalid")
        except PyMongoError as exc:
            return notice(store.current().describe_failure(exc), "unavailable")

    return wrapper


def section(title: str, *children: Any) -> html.Section:
    return html.Section([html.H3(title), *children], className="section")


def table(table_id: str, rows: Iterable[dict[str, Any]], columns: list[Column], page_size: int = 25,
          numeric: Sequence[str] = ()) -> Any:
    """A natively sortable table of `rows` showing `columns`; numeric columns (those of `numeric`, and those whose
    values are all numbers) sort as numbers, failures stand out."""
    data = [{field: row.get(field) for field, _ in columns} for row in rows]

    def numbers(field: str) -> bool:
        values = [r[field] for r in data if r[field] is not None]
        return field in numeric or bool(values) and all(isinstance(v, int | float) and not isinstance(v, bool)
                                                         for v in values)

    return dash_table.DataTable(
        id=table_id,
        columns=[{"id": field, "name": header, "type": "numeric" if numbers(field) else "text"}
                 for field, header in columns],
        data=data,
        sort_action="native",
        page_action="native",
        page_size=page_size,
        style_table={"overflowX": "auto"},
        style_cell={"fontFamily": "inherit", "fontSize": "14px", "padding": "4px 8px", "textAlign": "left",
                    "whiteSpace": "normal", "height": "auto", "maxWidth": "420px"},
        style_cell_conditional=[{"if": {"column_type": "numeric"}, "textAlign": "right"}],
        style_data_conditional=[{"if": {"filter_query": f'{{status}} = "{status}"'}, "backgroundColor": "#fdecea"}
                                for status in ("failed", "died")] if any(f == "status" for f, _ in columns) else [],
        style_header={"fontWeight": "600", "backgroundColor": "#eef1f5"},
    )


def csv_text(rows: Iterable[dict[str, Any]], fields: Sequence[str]) -> str:
    """`rows` as CSV with a header of `fields` (other keys ignored), for a page's download button."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def stat(label: str, value: Any, stat_id: str | None = None) -> html.Div:
    extra = {"id": stat_id} if stat_id else {}
    return html.Div([html.Div(label, className="stat-label"), html.Div(str(value), className="stat-value", **extra)],
                    className="stat")


def num(value: Any, digits: int = 1) -> float | int | None:
    """A number rounded for display that still sorts as a number in a table (None stays empty)."""
    if value is None:
        return None
    return round(float(value), digits) if digits else int(round(float(value)))


def share(part: Any, whole: Any) -> float | None:
    """`part / whole` as a percentage with one decimal, or None when `whole` is zero or missing."""
    if not whole:
        return None
    return round(100.0 * float(part or 0) / float(whole), 1)


def as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def fmt_time(moment: datetime | None, tz: Any) -> str:
    """A timestamp in the deployment's time zone, to the minute."""
    if not isinstance(moment, datetime):
        return "—"
    return as_utc(moment).astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def fmt_when(value: Any, tz: Any) -> str:
    """A timestamp in the deployment's time zone; a day or other text as it is."""
    return fmt_time(value, tz) if isinstance(value, datetime) else str(value if value is not None else "—")


def age_seconds(moment: datetime | None, now: datetime | None = None) -> float | None:
    if not isinstance(moment, datetime):
        return None
    return ((now or datetime.now(UTC)) - as_utc(moment)).total_seconds()


def fmt_age(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago `moment` was: '40 s', '12 min', '3 h 05 min', '4 d 2 h'."""
    seconds = age_seconds(moment, now)
    if seconds is None:
        return "—"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h {minutes % 60:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def day_picker(picker_id: str, collection: Collection, day: str | None) -> tuple[list[Any], str | None]:
    """A dropdown of the days `collection` has (newest first) and the day to show: `day` if valid, else the latest.

    Returns the components (a warning first when `day` was rejected) and the chosen day (None if no data yet).
    """
    s = store.current()
    try:
        days = s.days(collection)
    except NoData:
        return [], None
    warning = None
    if day is not None:
        try:
            day = s.check_day(collection, day)
        except InvalidInput as exc:
            warning, day = notice(f"Invalid input: {exc}; showing the latest day.", "invalid"), None
    picker = html.Div([html.Label("Day", htmlFor=picker_id),
                       dcc.Dropdown(id=picker_id, options=days, value=day or days[0], clearable=False)],
                      className="controls")
    return [warning, picker], day or days[0]

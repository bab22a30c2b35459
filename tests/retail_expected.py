"""Independent expectations for the retail smoke job, computed with the csv module from the input files."""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import datetime
from pathlib import Path


def parse_rows(path: Path) -> tuple[list[dict], int]:
    """Rows a correct job keeps, and how many it must reject (bad date, non-integer quantity, negative price)."""
    kept, rejected = [], 0
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            try:
                row["time"] = datetime.strptime(row["InvoiceDate"], "%m/%d/%y %H:%M")
                row["qty"] = int(row["Quantity"])
                row["price"] = float(row["UnitPrice"])
            except (TypeError, ValueError):
                rejected += 1
                continue
            if row["price"] < 0:
                rejected += 1
                continue
            kept.append(row)
    return kept, rejected


def daily_totals(paths: list[Path]) -> dict[tuple[str, str], dict]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for path in paths:
        for row in parse_rows(path)[0]:
            groups[(row["time"].strftime("%Y-%m-%d"), row["Country"])].append(row)
    return {
        key: {
            "invoices": len({r["InvoiceNo"] for r in rows}),
            "lines": len(rows),
            "revenue": round(sum(r["qty"] * r["price"] for r in rows), 2),
            "cancelled_lines": sum(r["InvoiceNo"].startswith("C") for r in rows),
        }
        for key, rows in groups.items()
    }

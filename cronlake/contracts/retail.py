"""The online-retail pipeline's contracts: the UCI Online Retail CSV row, the cleaned transactions dataset and
the daily totals collection."""

from __future__ import annotations

from cronlake.core.contracts import Collection, Dataset, Field, RecordType

# A landing CSV row, as the UCI Online Retail export writes it (InvoiceDate is `M/d/yy H:mm`, parsed by the job).
TRANSACTION = RecordType("retail_transaction", (
    Field("InvoiceNo"), Field("StockCode"), Field("Description"), Field("Quantity", "int"), Field("InvoiceDate"),
    Field("UnitPrice", "double"), Field("CustomerID"), Field("Country"), Field("TotalPrice", "double"),
))

# Cleaned transaction lines; `row_key` identifies a landed row (source file, its fields, its occurrence there).
TRANSACTIONS = Dataset("retail_transactions", (
    Field("invoice_no"), Field("stock_code"), Field("description"), Field("quantity", "int"),
    Field("invoice_time", "timestamp"), Field("unit_price", "double"), Field("customer_id"), Field("country"),
    Field("amount", "double"), Field("is_cancellation", "bool"), Field("source_file"), Field("row_key"),
    Field("invoice_day"),
), produced_by="retail_daily", partition_by=("invoice_day",))

# Totals per invoice day and country; `_id` = "<country>|<day>" (an id starting with a date is not matched by
# nx-27017).
DAILY = Collection("retail_daily", key=("day", "country"), id_order=("country", "day"), produced_by="retail_daily",
                   fields=("day", "country", "invoices", "lines", "revenue", "cancelled_lines"))

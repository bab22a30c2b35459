"""The retail transactions contracts: the UCI Online Retail CSV row and its cleaned lines, the Olist export's
order lines, and the serving collections (daily totals per UCI country, daily sales per source/region/category)."""

from __future__ import annotations

from cronlake.core import quality as Q
from cronlake.core.contracts import Collection, Dataset, Field, RecordType

OWNER = "shop-data@team"

# A landing CSV row, as the UCI Online Retail export writes it (InvoiceDate is `M/d/yy H:mm`, UK local time).
TRANSACTION = RecordType("retail_transaction", (
    Field("InvoiceNo"), Field("StockCode"), Field("Description"), Field("Quantity", "int"), Field("InvoiceDate"),
    Field("UnitPrice", "double"), Field("CustomerID"), Field("Country"), Field("TotalPrice", "double"),
))

# Cleaned UCI lines; `row_key` identifies a landed row (source file, its fields, its occurrence there).
# `invoice_time` is UTC, converted from `time_zone` (the shop's local zone); `invoice_day` is the local day.
# `amount` = quantity × unit price, negative for cancellations and returns, so sums are net revenue.
TRANSACTIONS = Dataset("retail_transactions", (
    Field("invoice_no"), Field("stock_code"), Field("description"), Field("quantity", "int"),
    Field("invoice_time", "timestamp"), Field("time_zone"), Field("unit_price", "double"), Field("customer_id"),
    Field("country"), Field("amount", "double"), Field("is_cancellation", "bool"), Field("is_return", "bool"),
    Field("is_free", "bool"), Field("source_file"), Field("row_key"), Field("invoice_day"),
), produced_by="retail_daily", partition_by=("invoice_day",), versioned=True, key=("row_key",), owner=OWNER,
    description="UCI Online Retail invoice lines, typed, UTC times, cancellations/returns/free lines flagged.",
    tags=("sales", "retail", "uci", "transactions"),
    quality=(
        Q.not_null("invoice_no", "stock_code", "quantity", "invoice_time", "unit_price", "country", "row_key"),
        Q.unique("row_key"),
        Q.in_range("unit_price", minimum=0),
        Q.accepted_values("time_zone", ("Europe/London",)),
        Q.not_null("customer_id", max_fraction=0.5, severity="warn"),
    ))

# One line of an Olist order, joined with its order, customer, product (English category) and seller.
# Times are UTC, converted from America/Sao_Paulo; `revenue` = price + freight.
ORDER_LINES = Dataset("retail_olist_order_lines", (
    Field("export"), Field("order_id"), Field("order_item_id", "int"), Field("product_id"), Field("category"),
    Field("category_translated", "bool"), Field("seller_id"), Field("seller_state"), Field("customer_unique_id"),
    Field("customer_city"), Field("customer_state"), Field("customer_zip_prefix"), Field("price", "double"),
    Field("freight", "double"), Field("revenue", "double"), Field("order_status"),
    Field("purchase_time", "timestamp"), Field("approved_time", "timestamp"), Field("delivered_time", "timestamp"),
    Field("estimated_delivery_time", "timestamp"), Field("delivery_delay_days", "int"), Field("is_cancelled", "bool"),
    Field("purchase_day"),
), produced_by="retail_olist", partition_by=("purchase_day",), versioned=True, key=("order_id", "order_item_id"),
    owner=OWNER, description="Olist order lines joined with order, customer, product category and seller.",
    tags=("sales", "retail", "olist", "transactions"),
    quality=(
        Q.not_null("order_id", "order_item_id", "product_id", "seller_id", "customer_unique_id", "purchase_time",
                   "price"),
        Q.unique("order_id", "order_item_id"),
        Q.in_range("price", minimum=0),
        Q.in_range("freight", minimum=0),
        Q.accepted_values("order_status", ("delivered", "shipped", "canceled", "unavailable", "processing",
                                           "invoiced", "created", "approved")),
        Q.not_null("category", max_fraction=0.05, severity="warn"),
    ))

# The Olist export's tables, by the name a landed file carries: `<export>.<table>.csv`.
OLIST_TABLES = ("orders", "order_items", "customers", "products", "sellers", "category_translation")

# Totals per invoice day and country; `_id` = "<country>|<day>" (an id starting with a date is not matched by
# nx-27017).
DAILY = Collection("retail_daily", key=("day", "country"), id_order=("country", "day"), produced_by="retail_daily",
                   fields=("day", "country", "invoices", "lines", "revenue", "cancelled_lines", "lineage_run"))

# Sales per day, source ("uci" | "olist"), region (UCI country or Olist customer state) and category (Olist
# English category; "all" for UCI, which has none): what the sales page draws.
SALES_DAILY = Collection(
    "retail_sales_daily", key=("source", "day", "region", "category"), id_order=("source", "region", "category", "day"),
    produced_by="retail_daily, retail_olist",
    fields=("source", "day", "region", "category", "orders", "lines", "revenue", "cancelled_lines", "lineage_run"),
    indexes=(("source", "day"), ("day",)))

"""Ingestion: plain-Python scripts that bring data into Kafka and into the lake's landing zone."""

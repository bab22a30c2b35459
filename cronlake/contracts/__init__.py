"""One contracts module per pipeline: its record types (with the Spark schema and CSV codec derived from them),
its processed datasets and its MongoDB serving collections. Every stage of a pipeline (ingest, process,
dashboard) takes names and fields from here."""

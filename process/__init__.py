"""Processing: Spark batch and streaming jobs over the lake, feeding MongoDB."""

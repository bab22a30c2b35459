"""The lake's REST access API: versioned datasets (with time travel) and the catalog, behind hashed API keys.

`python -m api.serve` serves it (uvicorn workers, 127.0.0.1); `python -m api.keys` manages the keys. It reads
only: Delta tables through delta-rs and DuckDB, the catalog and the keys in the ops database; it writes only its
audit records.
"""

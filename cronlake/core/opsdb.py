"""The collections of the ops database, which every pipeline shares: run records, heartbeats, Kafka lag, the
lake census, and the lake API's keys and audit trail. Declared here, in the core, so their writers (the runner,
long-running jobs, landing consumers, `lake_census`, the API) and their readers (status, watchdog, the dashboard's
health page) take one name and one field list.
"""

from __future__ import annotations

from cronlake.core.contracts import Collection

COUNTERS = ("rows_in", "rows_out", "records_quarantined", "files_archived", "files_quarantined")

# One document per run (`_id` = run id), inserted at start and completed at the end: the lineage of every output.
JOB_RUNS = Collection(
    "job_runs", key=("_id",), produced_by="every job", database="ops",
    indexes=(("job", "-started_at"), ("status", "-started_at")),
    fields=("job", "args", "host", "pid", "started_at", "ended_at", "status", *COUNTERS, "error", "duration_s",
            "extra"))
# One document per long-running job (`_id` = its name): when it last finished a batch and last said it was alive.
HEARTBEATS = Collection("heartbeats", key=("_id",), produced_by="a long-running job", database="ops",
                        fields=("last_batch_at", "alive_at", "batch_id", "pid", "host", "run_id"))
# One document per (consumer group, topic): how far the group's committed offsets trail the partitions' ends.
KAFKA_LAG = Collection("kafka_lag", key=("group", "topic"), produced_by="a landing consumer", database="ops",
                       fields=("group", "topic", "lag", "partitions", "updated_at"))
# One document per (zone, source) folder of the lake, `_id` = "<zone>/<source>".
LAKE_CENSUS = Collection("lake_census", key=("zone", "source"), produced_by="lake_census", database="ops",
                         fields=("zone", "source", "files", "bytes", "reject_files", "oldest_modified", "updated_at"))
# One document per lake API key (`_id` = key id): only the secret's SHA-256, its dataset scopes, expiry, revocation.
API_KEYS = Collection(
    "api_keys", key=("_id",), produced_by="api.keys", database="ops", indexes=(("-created_at",),),
    fields=("name", "secret_sha256", "scopes", "created_at", "expires_at", "revoked_at", "rate_per_minute"))
# One document per request: who (key id, None when unauthenticated), what (endpoint, dataset), rows, status.
API_AUDIT = Collection(
    "api_audit", key=("_id",), produced_by="api.serve", database="ops",
    indexes=(("-at",), ("key_id", "-at"), ("status", "-at")),
    fields=("at", "key_id", "method", "endpoint", "path", "dataset", "rows", "status", "duration_ms"))
OPS_COLLECTIONS = (JOB_RUNS, HEARTBEATS, KAFKA_LAG, LAKE_CENSUS, API_KEYS, API_AUDIT)

"""Velib landing consumer (job `velib_land`, every 5 minutes under cron): Kafka → CSV files in `landing/velib/`.

A consumer in group `cronlake-velib-landing` polls the topic until nothing new arrives for `--idle-seconds` (or
`--max-records` are read), then writes one CSV file per topic-partition batch, named by its offset range so that
names sort, e.g. `landing/velib/velib.station_status-p0-o000000000100-000000000199.csv` (header = the record
FIELDS), and commits the partition's offset only once the file is durably in the lake. Malformed messages (not
JSON, missing or mistyped fields) go to `quarantine/velib/<same name>.rejects.jsonl` with reason and offset.

Exactly one file per offset range, across crashes: before writing, the batch's range is recorded in
`checkpoints/velib_land/pending/<topic>-p<N>.json`. A run that finds a pending range starting at the committed
offset re-reads exactly that range, so it writes the same name with the same content (and writes nothing if the
batch job already took the file from landing), then commits. After each run the group's lag per partition is
written to `<ops db>.kafka_lag`. The mechanics are the core's `KafkaLanding` (cronlake/core/kafka_landing.py).

    python -m cronlake.ops.run velib_land [--max-records N] [--idle-seconds S]
"""

from __future__ import annotations

import sys

from cronlake.contracts import velib
from cronlake.contracts.velib import STATION
from cronlake.core.kafka_landing import KafkaLanding

GROUP = "cronlake-velib-landing"
LANDING = KafkaLanding(source="velib", group=GROUP, topic=velib.topic, record=STATION, file_format="csv")
JOB = LANDING.job("velib_land", __doc__, kafka_topics=velib.topics)


if __name__ == "__main__":
    sys.exit(JOB.main())

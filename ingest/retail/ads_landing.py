"""Ad campaign landing consumer (job `retail_ads_land`): the replayed ad events on Kafka → JSON-lines files in
`landing/ads/`, one per topic-partition batch named by its offset range
(`ecommerce.ad_campaigns-p0-o000000000000-000000000265.jsonl`), each line one valid event of the
`retail_ad_event` contract. Group `cronlake-ads-landing`; malformed events go to
`quarantine/ads/<same name>.rejects.jsonl` with reason and offset; the offset is committed only once the file is
in the lake, and a crash between the two lands the same file again, never twice (the core's `KafkaLanding`, the
same consumer as `velib_land`).

    python -m cronlake.ops.run retail_ads_land [--max-records N] [--idle-seconds S]
"""

from __future__ import annotations

import sys

from cronlake.contracts import retail_ads
from cronlake.core.kafka_landing import KafkaLanding

GROUP = "cronlake-ads-landing"
LANDING = KafkaLanding(source=retail_ads.SOURCE, group=GROUP, topic=retail_ads.topic, record=retail_ads.AD_EVENT,
                       file_format="jsonl")
JOB = LANDING.job("retail_ads_land", __doc__, kafka_topics=retail_ads.topics)


if __name__ == "__main__":
    sys.exit(JOB.main())

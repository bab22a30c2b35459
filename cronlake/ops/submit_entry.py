"""The driver file `scripts/submit` hands to `spark-submit`: it runs one registered job through the runner.

    spark-submit --master yarn --py-files cronlake-code.zip cronlake/ops/submit_entry.py JOB [ARGS...]
"""

import sys

from cronlake.ops.run import main

if __name__ == "__main__":
    sys.exit(main())

"""Run one job with the configured Spark master: `scripts/submit JOB [ARGS...]`.

A job that declares the need "spark" goes through `spark-submit --master $CRONLAKE_SPARK_MASTER`
with the kit's code zipped into `--py-files` and `cronlake/ops/submit_entry.py` as the driver file, so
the same command works on local[*], a standalone master and YARN (client mode: the driver, its lock and its
run record stay on this machine; `CRONLAKE_CHECKOUT` tells it where `.env` and the sources are, since it imports
the kit from the zip). Any other job runs as `python -m cronlake.ops.run JOB [ARGS...]`.
Either way the process is replaced (exec), so its exit code is the job's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from cronlake.core import jobs
from cronlake.core.settings import CHECKOUT, SettingError, Settings, load
from cronlake.core.spark import build_code_zip

ENTRY = Path(__file__).with_name("submit_entry.py")


def command(settings: Settings, job: str, job_args: list[str]) -> list[str]:
    python = sys.executable
    if not jobs.get(job).uses_spark:
        return [python, "-m", "cronlake.ops.run", job, *job_args]
    spark_submit = shutil.which("spark-submit", path=str(Path(python).parent)) or shutil.which("spark-submit")
    if spark_submit is None:
        raise SettingError("spark-submit not found next to the Python interpreter nor on PATH (pip install pyspark)")
    code_zip = build_code_zip(settings.state_path / "dist" / "cronlake-code.zip")
    return [spark_submit, "--master", settings.spark_master, "--name", f"cronlake-{job}",
            "--py-files", str(code_zip), "--conf", f"spark.pyspark.python={python}",
            "--conf", f"spark.pyspark.driver.python={python}", str(ENTRY), job, *job_args]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/submit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", choices=list(jobs.registry()), metavar="JOB",
                        help="a registered job (python -m cronlake.ops.run --list)")
    parser.add_argument("job_args", nargs=argparse.REMAINDER, help="the job's own arguments")
    args = parser.parse_args(argv)
    try:
        argv_to_run = command(load(), args.job, args.job_args)
    except SettingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("submit: " + " ".join(argv_to_run), file=sys.stderr, flush=True)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ["CRONLAKE_CHECKOUT"] = str(CHECKOUT)  # the driver imports the kit from the zip: .env, defaults
    os.execv(argv_to_run[0], argv_to_run)


if __name__ == "__main__":
    sys.exit(main())

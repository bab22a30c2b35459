"""Spark sessions configured from settings, with the kit's own code shipped to the executors.

The driver is the job's own Python process (client mode), whatever the master: `local[*]`, `spark://…` or
`yarn` (with HADOOP_CONF_DIR set). On a non-local master the packages are zipped and added with
`spark.submit.pyFiles`, so executors import the same code the driver runs.
"""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path
from typing import IO, TYPE_CHECKING

from cronlake.core.files import atomic_write
from cronlake.core.settings import CHECKOUT, SettingError, Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SHIPPED_PACKAGES = ("cronlake", "ingest", "process", "dashboard")


def build_code_zip(destination: Path) -> Path:
    """Zip the kit's Python packages (sources only) for executors; rebuilt only when a source is newer."""
    sources = sorted(
        path
        for package in SHIPPED_PACKAGES
        for path in (CHECKOUT / package).rglob("*.py")
        if "__pycache__" not in path.parts
    )
    if not sources:
        raise SettingError(f"CRONLAKE_CHECKOUT: no kit sources under {CHECKOUT} to ship to the executors "
                           "(set it to the checkout when the kit is imported from a zip)")
    newest = max(path.stat().st_mtime for path in sources)
    if destination.exists() and destination.stat().st_mtime >= newest:
        return destination

    def write(handle: IO[bytes]) -> None:
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sources:
                archive.write(path, path.relative_to(CHECKOUT).as_posix())

    return atomic_write(destination, write)


def get_session(settings: Settings, app_name: str, shuffle_partitions: int = 8) -> SparkSession:
    """A SparkSession on the configured master, UTC session time zone, quiet console."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(settings.spark_master)
        .appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")  # what every Delta reader takes
        .config("spark.pyspark.python", os.environ["PYSPARK_PYTHON"])
    )
    if settings.lake_replication:
        builder = builder.config("spark.hadoop.dfs.replication", settings.lake_replication)
    if not settings.spark_master.startswith("local"):
        code_zip = build_code_zip(settings.state_path / "dist" / "cronlake-code.zip")
        builder = builder.config("spark.submit.pyFiles", str(code_zip))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark

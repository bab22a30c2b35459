"""Shared test fixtures: real servers on free 127.0.0.1 ports, started by the tests themselves.

- `stack` (session): the embedded Kafka-compatible broker (tansu) and MongoDB-wire server (nx-27017).
- `cronlake_env` (per test): environment for one test — its own lake root, state dir and MongoDB database
  names on the shared servers — applied to os.environ and returned as a dict for subprocesses.
- `spark` (session): one local[2] SparkSession for in-process job tests (jobs reuse it and leave it running).
- `run_cli(args, env)`: run a command with the test's environment, capturing output.

External servers (docs/cluster.md): `CRONLAKE_TEST_KAFKA_BOOTSTRAP=host:port` makes every test use that broker
instead of the embedded one; `CRONLAKE_TEST_WEBHDFS_URL` with `CRONLAKE_TEST_LAKE_ROOT=hdfs://namenode:8020/path`
adds the real HDFS to the lake tests' backends (skipped when unset). A test's topics (named after its
CRONLAKE_VELIB_TOPIC) and the consumer groups left with offsets only on them are deleted after it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cronlake.ops.embedded import free_port

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXTERNAL_KAFKA = os.environ.get("CRONLAKE_TEST_KAFKA_BOOTSTRAP", "")
EXTERNAL_WEBHDFS = os.environ.get("CRONLAKE_TEST_WEBHDFS_URL", "")
EXTERNAL_LAKE_ROOT = os.environ.get("CRONLAKE_TEST_LAKE_ROOT", "")
# scripts/test runs two pytest-xdist workers that take whole files in collection order (--dist loadfile
# --no-loadscope-reorder): the longest files go first, so that no worker ends alone with one of them.
LONGEST_FILES = ("test_churn.py", "test_protocol.py", "test_dashboard.py", "test_standalone.py", "test_api.py",
                 "test_retail_trainset.py", "test_ops_scripts.py", "test_cron_daemon.py", "test_velib_stream.py",
                 "test_governance.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    first = {name: rank for rank, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: first.get(item.path.name, len(first)))



@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    from cronlake.core import settings
    from cronlake.ops import embedded

    env = embedded.throwaway_stack_env(tmp_path_factory.mktemp("stack"))
    configured = settings.load({**os.environ, **env})
    embedded.up(configured)
    try:
        yield {**env, "CRONLAKE_KAFKA_BOOTSTRAP": EXTERNAL_KAFKA} if EXTERNAL_KAFKA else env
    finally:
        embedded.down(configured)


@pytest.fixture
def cronlake_env(stack: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:8]
    env = {
        **stack,
        "CRONLAKE_STATE_DIR": str(tmp_path / "state"),
        "CRONLAKE_LAKE_ROOT": (tmp_path / "lake").as_uri(),
        "CRONLAKE_MONGO_DB": f"t_{tag}",
        "CRONLAKE_MONGO_OPS_DB": f"t_{tag}_ops",
        "CRONLAKE_VELIB_TOPIC": f"velib.t{tag}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield env
    drop_test_kafka(env["CRONLAKE_KAFKA_BOOTSTRAP"], env["CRONLAKE_VELIB_TOPIC"])


def drop_test_kafka(bootstrap: str, prefix: str) -> None:
    """Delete the topics named `prefix…` and the consumer groups whose offsets are all on them (or on topics
    deleted already)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="cronlake-tests-cleanup")
    try:
        existing = set(admin.list_topics())
        topics = [topic for topic in existing if topic.startswith(prefix)]
        for group in [found["group_id"] for found in admin.list_groups()]:
            offsets = admin.list_group_offsets({group: None}).get(group, {})
            if offsets and all(p.topic in topics or p.topic not in existing for p in offsets):
                admin.delete_groups([group])
        if topics:
            admin.delete_topics(topics)
    finally:
        admin.close()


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]").appName("cronlake-tests")
        .config("spark.sql.session.timeZone", "UTC").config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 300, **kwargs: object
) -> subprocess.CompletedProcess:
    """Run a command (e.g. [sys.executable, '-m', 'cronlake.ops.run', 'retail_daily']) with a test env."""
    return subprocess.run(args, env={**os.environ, **env}, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


@pytest.fixture(scope="session")
def spark_standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Spark standalone master and one worker started from the pyspark wheel; yields the master URL."""
    import time

    import pyspark

    spark_home = Path(pyspark.__file__).parent
    logs = tmp_path_factory.mktemp("standalone")
    env = {**os.environ, "SPARK_HOME": str(spark_home), "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_WORKER_DIR": str(logs / "work"), "PYSPARK_PYTHON": sys.executable}
    port = free_port()
    master_url = f"spark://127.0.0.1:{port}"
    spark_class = str(spark_home / "bin" / "spark-class")
    daemons = [
        subprocess.Popen([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                          "--port", str(port), "--webui-port", str(free_port())],
                         env=env, stdout=open(logs / "master.log", "w"), stderr=subprocess.STDOUT),
    ]
    try:
        deadline = time.monotonic() + 60
        while "I have been elected leader" not in (logs / "master.log").read_text():
            assert time.monotonic() < deadline, (logs / "master.log").read_text()
            time.sleep(0.5)
        daemons.append(subprocess.Popen(
            [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "2",
             "--memory", "2g", "--webui-port", str(free_port()), master_url],
            env=env, stdout=open(logs / "worker.log", "w"), stderr=subprocess.STDOUT))
        while "Successfully registered with master" not in (logs / "worker.log").read_text():
            assert time.monotonic() < deadline, (logs / "worker.log").read_text()
            time.sleep(0.5)
        yield master_url
    finally:
        for daemon in reversed(daemons):
            daemon.terminate()
            daemon.wait(timeout=30)

"""Settings: defaults, .env and environment precedence, masking, and one-line errors for bad settings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import free_port, run_cli

from cronlake.core.settings import CHECKOUT, SettingError, load

RUN = [sys.executable, "-m", "cronlake.ops.run"]
SETTINGS = [sys.executable, "-m", "cronlake.core.settings"]


def test_embedded_defaults_run_on_one_machine() -> None:
    settings = load({"CRONLAKE_ENV_FILE": "/dev/null"})
    assert settings.lake_root == (CHECKOUT / "var" / "lake").as_uri()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.mongo_uri == "mongodb://127.0.0.1:27017"
    assert settings.spark_master == "local[*]"
    assert settings.timezone == "Europe/Paris"


def test_environment_wins_over_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "cluster.env"
    env_file.write_text(
        "# cluster settings\n"
        "export CRONLAKE_LAKE_ROOT=hdfs://namenode:8020/lake\n"
        "CRONLAKE_WEBHDFS_URL='http://namenode:9870'\n"
        'CRONLAKE_SPARK_MASTER="yarn"\n'
        "CRONLAKE_MONGO_URI=mongodb://jobs:s3cret@mongo:27017/?authSource=admin\n"
    )
    settings = load({"CRONLAKE_ENV_FILE": str(env_file), "CRONLAKE_SPARK_MASTER": "spark://master:7077"})
    assert settings.lake_root == "hdfs://namenode:8020/lake"
    assert settings.webhdfs_url == "http://namenode:9870"
    assert settings.spark_master == "spark://master:7077"
    assert settings.masked()["CRONLAKE_MONGO_URI"] == "mongodb://jobs:***@mongo:27017/?authSource=admin"


@pytest.mark.parametrize(
    ("variable", "value", "named", "message"),
    [
        ("CRONLAKE_LAKE_ROOT", "ftp://files/lake", "CRONLAKE_LAKE_ROOT", "unsupported scheme 'ftp'"),
        ("CRONLAKE_LAKE_ROOT", "hdfs://namenode:8020/lake", "CRONLAKE_WEBHDFS_URL", "required when"),
        ("CRONLAKE_KAFKA_BOOTSTRAP", "kafka", "CRONLAKE_KAFKA_BOOTSTRAP", "expected host:port"),
        ("CRONLAKE_MONGO_URI", "http://mongo:27017", "CRONLAKE_MONGO_URI", "expected mongodb://"),
        ("CRONLAKE_SPARK_MASTER", "mesos://x:5050", "CRONLAKE_SPARK_MASTER", "expected local[*]"),
        ("CRONLAKE_TIMEZONE", "Europe/Atlantis", "CRONLAKE_TIMEZONE", "unknown time zone"),
    ],
)
def test_malformed_setting_is_named(variable: str, value: str, named: str, message: str) -> None:
    with pytest.raises(SettingError) as error:
        load({"CRONLAKE_ENV_FILE": "/dev/null", variable: value})
    assert str(error.value).startswith(f"{named}: ")
    assert message in str(error.value)


def one_line_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {result.stderr}"
    assert "Traceback" not in result.stderr
    return lines[0]


def test_settings_command_prints_masked_settings(tmp_path: Path) -> None:
    result = run_cli(SETTINGS, {"CRONLAKE_ENV_FILE": "/dev/null",
                                "CRONLAKE_MONGO_URI": "mongodb://dash:topsecret@mongo:27017"})
    assert result.returncode == 0
    assert "CRONLAKE_MONGO_URI=mongodb://dash:***@mongo:27017" in result.stdout
    assert "topsecret" not in result.stdout


def test_unknown_lake_scheme_fails_fast_in_one_line(cronlake_env: dict[str, str]) -> None:
    result = run_cli(RUN + ["land_file", "--source", "x", "README.md"], {**cronlake_env, "CRONLAKE_LAKE_ROOT": "s3://b/lake"})
    assert result.returncode == 2
    assert one_line_error(result).startswith("error: CRONLAKE_LAKE_ROOT: unsupported scheme 's3'")


def test_unreachable_mongo_fails_fast_in_one_line(cronlake_env: dict[str, str]) -> None:
    env = {**cronlake_env, "CRONLAKE_MONGO_URI": f"mongodb://127.0.0.1:{free_port()}"}
    result = run_cli(RUN + ["land_file", "--source", "x", "README.md"], env, timeout=60)
    assert result.returncode == 2
    assert one_line_error(result).startswith("error: CRONLAKE_MONGO_URI: no MongoDB answers at mongodb://127.0.0.1:")


def test_unreachable_kafka_fails_fast_in_one_line(cronlake_env: dict[str, str]) -> None:
    env = {**cronlake_env, "CRONLAKE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    result = run_cli(SETTINGS + ["--check"], env, timeout=60)
    assert result.returncode == 2
    assert one_line_error(result).startswith("error: CRONLAKE_KAFKA_BOOTSTRAP: no Kafka broker answers at 127.0.0.1:")


def test_all_services_answer_on_the_embedded_stack(cronlake_env: dict[str, str]) -> None:
    result = run_cli(SETTINGS + ["--check"], cronlake_env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Kafka, MongoDB and the lake answer" in result.stdout


def test_check_writes_and_reads_the_lake_and_names_a_datanode_that_does_not_resolve(
    cronlake_env: dict[str, str], tmp_path: Path
) -> None:
    from webhdfs_server import serve

    server, seen = serve(tmp_path / "hdfs")
    host, port = server.server_address[:2]
    env = {**cronlake_env, "CRONLAKE_LAKE_ROOT": "hdfs://namenode:8020/lake",
           "CRONLAKE_WEBHDFS_URL": f"http://{host}:{port}"}
    try:
        answers = run_cli(SETTINGS + ["--check"], env, timeout=60)
        server.RequestHandlerClass.datanode_host = "datanode-1.invalid"  # the NameNode's name for its DataNode
        unresolved = run_cli(SETTINGS + ["--check"], env, timeout=60)
    finally:
        server.shutdown()
    assert answers.returncode == 0, answers.stderr
    assert any(r.startswith("GET OPEN /lake/checkpoints/_check/") for r in seen), "the probe was read back"
    assert not any((tmp_path / "hdfs" / "lake" / "checkpoints" / "_check").iterdir()), "and deleted"
    assert unresolved.returncode == 2
    assert one_line_error(unresolved).startswith(
        "error: CRONLAKE_WEBHDFS_URL: the lake at hdfs://namenode:8020/lake answers but a write and read back failed: "
        "lake: cannot write hdfs://namenode:8020/lake/checkpoints/_check/")
    assert one_line_error(unresolved).endswith(f"host name does not resolve [host datanode-1.invalid:{port}]")

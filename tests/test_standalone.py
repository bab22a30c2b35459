"""One code path, two deployments: the jobs run on a Spark standalone cluster with settings shaped exactly like
the compose edge's, where only the endpoints point at this machine instead of the compose services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from conftest import FIXTURES, REPO, run_cli
from pymongo import MongoClient
from retail_expected import daily_totals

from cronlake.core.spark import SHIPPED_PACKAGES

ENDPOINTS = {"CRONLAKE_LAKE_ROOT", "CRONLAKE_WEBHDFS_URL", "CRONLAKE_KAFKA_BOOTSTRAP", "CRONLAKE_MONGO_URI",
             "CRONLAKE_SPARK_MASTER", "CRONLAKE_STATE_DIR"}


def compose_edge_settings() -> dict[str, str]:
    edge = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["edge"]["environment"]
    return {key: str(value) for key, value in edge.items() if key.startswith("CRONLAKE_")}


def test_jobs_run_on_a_standalone_cluster_with_compose_shaped_settings(
    cronlake_env: dict[str, str], spark_standalone: str, tmp_path: Path
) -> None:
    compose = compose_edge_settings()
    local = {
        "CRONLAKE_LAKE_ROOT": cronlake_env["CRONLAKE_LAKE_ROOT"],
        "CRONLAKE_WEBHDFS_URL": "",
        "CRONLAKE_KAFKA_BOOTSTRAP": cronlake_env["CRONLAKE_KAFKA_BOOTSTRAP"],
        "CRONLAKE_MONGO_URI": cronlake_env["CRONLAKE_MONGO_URI"],
        "CRONLAKE_SPARK_MASTER": spark_standalone,
        "CRONLAKE_STATE_DIR": cronlake_env["CRONLAKE_STATE_DIR"],
    }
    assert set(local) == ENDPOINTS and ENDPOINTS <= set(compose) | {"CRONLAKE_WEBHDFS_URL"}
    env = {**compose, **local, "CRONLAKE_ENV_FILE": "/dev/null"}
    assert env["CRONLAKE_MONGO_DB"] == compose["CRONLAKE_MONGO_DB"] == "cronlake"
    server = MongoClient(env["CRONLAKE_MONGO_URI"])
    for name in (env["CRONLAKE_MONGO_DB"], env["CRONLAKE_MONGO_OPS_DB"]):
        server.drop_database(name)  # compose's fixed names, shared by nothing else in the tests

    landed = run_cli([sys.executable, "-m", "cronlake.ops.run", "land_file", "--source", "retail",
                      str(FIXTURES / "retail" / "retail_part1.csv")], env)
    assert landed.returncode == 0, landed.stderr
    result = run_cli([sys.executable, "-m", "cronlake.ops.run", "retail_daily"], env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    steps = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert {"step": "spark.started", "master": spark_standalone}.items() <= next(
        s for s in steps if s["step"] == "spark.started").items()

    database = server[env["CRONLAKE_MONGO_DB"]]
    totals = {(d["day"], d["country"]): {k: d[k] for k in ("invoices", "lines", "revenue", "cancelled_lines")}
              for d in database.retail_daily.find()}
    assert totals == daily_totals([FIXTURES / "retail" / "retail_part1.csv"])
    assert (Path(env["CRONLAKE_STATE_DIR"]) / "dist" / "cronlake-code.zip").is_file(), "code shipped as a zip"


def test_submit_runs_a_spark_job_on_a_standalone_master_with_settings_in_the_checkouts_env_file(
    cronlake_env: dict[str, str], spark_standalone: str, tmp_path: Path
) -> None:
    checkout = tmp_path / "checkout"  # a checkout whose .env holds every setting; the process environment none
    checkout.mkdir()
    for package in (*SHIPPED_PACKAGES, "scripts", ".venv"):
        (checkout / package).symlink_to(REPO / package)
    settings = {**{k: v for k, v in cronlake_env.items() if k.startswith("CRONLAKE_")},
                "CRONLAKE_SPARK_MASTER": spark_standalone}
    (checkout / ".env").write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    env = {key: value for key, value in os.environ.items() if not key.startswith("CRONLAKE_")}
    fixture = FIXTURES / "retail" / "retail_part1.csv"
    landing = Path(urlsplit(settings["CRONLAKE_LAKE_ROOT"]).path) / "landing" / "retail"
    landing.mkdir(parents=True)
    (landing / fixture.name).write_bytes(fixture.read_bytes())

    result = subprocess.run([str(checkout / "scripts" / "submit"), "retail_daily"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"spark-submit --master {spark_standalone}" in result.stderr
    database = MongoClient(settings["CRONLAKE_MONGO_URI"])[settings["CRONLAKE_MONGO_DB"]]
    assert {(d["day"], d["country"]): d["lines"] for d in database.retail_daily.find()} == {
        key: totals["lines"] for key, totals in daily_totals([fixture]).items()}
    runs = MongoClient(settings["CRONLAKE_MONGO_URI"])[settings["CRONLAKE_MONGO_OPS_DB"]].job_runs
    assert runs.find_one({"job": "retail_daily"})["status"] == "succeeded"

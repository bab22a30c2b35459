"""The real cron daemon runs what `schedules install` writes: a one-minute entry leaves a run record."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli

from cronlake.core.mongo import ops_db
from cronlake.core.runner import utcnow
from cronlake.core.settings import load

CRON_D = Path("/etc/cron.d")


@pytest.fixture
def cron_daemon() -> Iterator[None]:
    """A running Debian cron daemon: installed and started if needed, stopped afterwards if we started it."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the test writes a file into /etc/cron.d")
    if shutil.which("cron") is None:
        install = subprocess.run(["apt-get", "install", "-y", "-qq", "cron"], capture_output=True, text=True,
                                 timeout=600)
        if install.returncode != 0 or shutil.which("cron") is None:
            pytest.skip(f"cron is not installed and apt-get install cron failed: {install.stderr.strip()[-300:]}")
    started = None
    if subprocess.run(["pgrep", "-x", "cron"], capture_output=True).returncode != 0:
        start = subprocess.run(["cron"], capture_output=True, text=True)
        if start.returncode != 0:
            pytest.skip(f"the cron daemon does not start: {start.stderr.strip()}")
        started = int(Path("/run/crond.pid").read_text())
    yield
    if started is not None:
        os.kill(started, signal.SIGTERM)


def test_cron_runs_the_installed_entry_and_remove_takes_it_away(cronlake_env, cron_daemon, tmp_path):
    settings_file = tmp_path / "cron.env"
    settings_file.write_text("".join(f"{k}={v}\n" for k, v in cronlake_env.items() if k != "CRONLAKE_ENV_FILE"))
    entry = f"test_census_{uuid.uuid4().hex[:6]}"
    schedules_file = tmp_path / "schedules.yaml"
    schedules_file.write_text(f'entries:\n  - name: {entry}\n    schedule: "* * * * *"\n    job: lake_census\n'
                              "    args: []\n    description: cron daemon test\n")
    cron_file = CRON_D / f"cronlake-{entry}".replace("_", "-")
    command = [sys.executable, "-m", "cronlake.ops.schedules", "ACTION", "--cron-file", str(cron_file),
               "--cron-user", "root", "--settings-file", str(settings_file), "--schedules", str(schedules_file)]

    installed_at = utcnow()
    result = run_cli([a.replace("ACTION", "install") for a in command], cronlake_env, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    try:
        assert oct(cron_file.stat().st_mode & 0o777) == "0o644"
        runs = ops_db(load()).job_runs
        deadline = time.monotonic() + 90
        record = None
        while record is None and time.monotonic() < deadline:
            record = runs.find_one({"job": "lake_census", "status": "succeeded", "started_at": {"$gt": installed_at}})
            time.sleep(1)
        log = Path(cronlake_env["CRONLAKE_STATE_DIR"]) / "log" / "cron" / f"{entry}.log"
        assert record is not None, f"no lake_census run within 90 s of install; log: {log.read_text()[-2000:]}" \
            if log.exists() else "no lake_census run within 90 s of install, and no cron log was written"
        assert f'"cron_entry": "{entry}"' in log.read_text()
    finally:
        removed = run_cli([a.replace("ACTION", "remove") for a in command], cronlake_env, timeout=60)
    assert removed.returncode == 0, removed.stderr
    assert not cron_file.exists()


def test_user_crontab_install_and_remove_leave_the_users_lines_alone(tmp_path):
    if shutil.which("crontab") is None:
        pytest.skip("no crontab command (apt-get install -y cron)")
    before = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    had_crontab = before.returncode == 0
    settings_file = tmp_path / "cron.env"
    settings_file.write_text(f"CRONLAKE_STATE_DIR={tmp_path / 'state'}\n")
    schedules_file = tmp_path / "schedules.yaml"
    schedules_file.write_text('entries:\n  - name: user_tab_test\n    schedule: "0 0 1 1 *"\n    job: lake_census\n'
                              "    args: []\n    description: never runs during the test\n")
    command = [sys.executable, "-m", "cronlake.ops.schedules", "ACTION", "--user",
               "--settings-file", str(settings_file), "--schedules", str(schedules_file)]
    env = {"CRONLAKE_ENV_FILE": str(settings_file)}
    try:
        assert run_cli([a.replace("ACTION", "install") for a in command], env, timeout=60).returncode == 0
        installed = subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
        assert installed.startswith(before.stdout if had_crontab else "")
        assert installed.rstrip().endswith("# cronlake:user_tab_test")
        listed = run_cli([a.replace("ACTION", "list") for a in command], env, timeout=60)
        assert "user_tab_test" in listed.stdout and "[installed]" in listed.stdout
    finally:
        removed = run_cli([a.replace("ACTION", "remove") for a in command], env, timeout=60)
    assert removed.returncode == 0, removed.stderr
    after = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    assert (after.returncode == 0, after.stdout) == (had_crontab, before.stdout)

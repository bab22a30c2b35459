"""Schedules as code: the installer against temporary crontab files, and the `exec` wrapper cron runs."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import pytest
from conftest import REPO, run_cli
from crontab import CronTab

from cronlake.core.mongo import ops_db
from cronlake.core.runner import JobLock
from cronlake.core.settings import load
from cronlake.ops import schedules

USER_LINES = (
    "# the operator's own entries\n"
    'MAILTO=""\n'
    "*/5  *  * * *   /usr/bin/backup --label \"a%b\"  # nightly thing\n"
    "@daily echo daily\n"
    "not a cron line, kept as is\n"
)

SCHEDULES = """\
entries:
  - name: census
    schedule: "*/5 * * * *"
    job: lake_census
    args: []
    description: count the lake
  - name: retail_today
    schedule: "7 * * * *"
    job: retail_daily
    args: ["--max-files", "3", "--day", "{today}"]
    description: retail totals
"""


@pytest.fixture
def workspace(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "schedules.yaml").write_text(SCHEDULES)
    (tmp_path / "cronlake.env").write_text(f"CRONLAKE_LAKE_ROOT={(tmp_path / 'lake').as_uri()}\n")
    return {"dir": tmp_path, "schedules": tmp_path / "schedules.yaml", "settings": tmp_path / "cronlake.env",
            "cron": tmp_path / "cronlake_tab"}


def schedules_cli(workspace: dict[str, Path], action: str, *extra: str, schedules_file: Path | None = None):
    args = [sys.executable, "-m", "cronlake.ops.schedules", action, "--cron-file", str(workspace["cron"]),
            "--cron-user", "nobody", "--settings-file", str(workspace["settings"]),
            "--schedules", str(schedules_file or workspace["schedules"]), *extra]
    return run_cli(args, {}, timeout=60)


def test_install_is_idempotent_keeps_user_lines_and_remove_takes_only_ours(workspace):
    workspace["cron"].write_text(USER_LINES)
    first = schedules_cli(workspace, "install")
    assert first.returncode == 0, first.stderr
    installed = workspace["cron"].read_text()
    assert installed.startswith(USER_LINES), "the user's lines must stay byte for byte, in place"

    tab = CronTab(tab=installed, user=False)  # a system crontab: every line has a user field
    ours = {job.comment: job for job in tab if job.comment.startswith("cronlake:")}
    assert set(ours) == {"cronlake:census", "cronlake:retail_today"}
    census = ours["cronlake:census"]
    assert str(census.slices) == "*/5 * * * *" and census.user == "nobody" and census.is_enabled()
    assert f"cd {REPO} && " in census.command
    assert f"CRONLAKE_ENV_FILE={workspace['settings']}" in census.command
    assert "JAVA_HOME=" in census.command and "PATH=" in census.command
    assert census.command.endswith("-m cronlake.ops.schedules exec census -- lake_census")
    assert "exec retail_today -- retail_daily --max-files 3 --day '{today}'" in ours["cronlake:retail_today"].command

    second = schedules_cli(workspace, "install")
    assert second.returncode == 0 and "nothing written" in second.stdout
    assert workspace["cron"].read_text() == installed

    removed = schedules_cli(workspace, "remove")
    assert removed.returncode == 0, removed.stderr
    assert workspace["cron"].read_text() == USER_LINES


def test_changed_schedule_is_updated_in_place_and_dropped_entry_removed(workspace):
    workspace["cron"].write_text(USER_LINES)
    assert schedules_cli(workspace, "install").returncode == 0
    changed = workspace["dir"] / "changed.yaml"
    changed.write_text(SCHEDULES.replace('"*/5 * * * *"', '"3 * * * *"').split("  - name: retail_today")[0])
    diff = schedules_cli(workspace, "diff", schedules_file=changed)
    assert diff.returncode == 0
    assert "-*/5 * * * * nobody" in diff.stdout and "+3 * * * * nobody" in diff.stdout
    assert "-7 * * * * nobody" in diff.stdout  # the dropped entry's line goes
    assert schedules_cli(workspace, "install", schedules_file=changed).returncode == 0
    lines = workspace["cron"].read_text().splitlines()
    assert lines[:5] == USER_LINES.splitlines()
    assert len(lines) == 6 and lines[5].startswith("3 * * * * nobody ") and lines[5].endswith("# cronlake:census")


@pytest.mark.parametrize(("broken", "message"), [
    (('"*/5 * * * *"', '"*/61 * * * *"'), "invalid cron schedule"),
    (("job: lake_census", "job: no_such_job"), "unknown job 'no_such_job'"),
    (('"--max-files", "3"', '"--max-files", "three"'), "invalid int value"),
    (('"{today}"', '"{tomorrow}"'), "unknown placeholder {tomorrow}"),
])
def test_invalid_entry_is_refused_and_nothing_written(workspace, broken, message):
    workspace["cron"].write_text(USER_LINES)
    bad = workspace["dir"] / "bad.yaml"
    bad.write_text(SCHEDULES.replace(*broken))
    result = schedules_cli(workspace, "install", schedules_file=bad)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.startswith("error: entry ")
    assert workspace["cron"].read_text() == USER_LINES


def test_missing_settings_file_is_refused(workspace):
    workspace["settings"].unlink()
    result = schedules_cli(workspace, "install")
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert not workspace["cron"].exists()


def test_repository_schedules_are_valid():
    entries = schedules.load_entries()
    names = {entry.job for entry in entries}
    assert {"velib_produce", "velib_land", "velib_daily", "velib_train", "watchdog",
            "lake_census"} <= names
    for entry in entries:
        schedules.validate(entry)


def test_placeholders_expand_to_days():
    assert schedules.expand(["--day", "{yesterday}", "x{today}"], date(2024, 3, 1)) == \
        ["--day", "2024-02-29", "x2024-03-01"]


def test_rotate_keeps_a_bounded_number_of_logs(tmp_path):
    log = tmp_path / "entry.log"
    for generation in range(5):
        log.write_text(f"generation {generation}\n" * 10)
        schedules.rotate(log, max_bytes=50, keep=2)
    assert not log.exists()
    assert (tmp_path / "entry.log.1").read_text().startswith("generation 4")
    assert (tmp_path / "entry.log.2").read_text().startswith("generation 3")
    assert not (tmp_path / "entry.log.3").exists()


def test_exec_logs_rotates_and_treats_a_held_lock_as_success(cronlake_env):
    settings = load()
    command = [sys.executable, "-m", "cronlake.ops.schedules", "exec", "census", "--log-max-bytes", "100",
               "--", "lake_census"]
    first = run_cli(command, cronlake_env, timeout=60)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "" and first.stderr == "", "cron mails any output: everything goes to the log"
    log = settings.state_path / "log" / "cron" / "census.log"
    assert '"step": "end"' in log.read_text()

    lock = JobLock(settings.state_path, "lake_census")
    assert lock.acquire()
    try:
        skipped = run_cli(command, cronlake_env, timeout=60)
    finally:
        lock.release()
    assert skipped.returncode == 0, "a run skipped because the previous one still runs is not a failure"
    assert '"cron_entry": "census"' in (log.parent / "census.log.1").read_text()  # the first log was rotated
    assert '"reason": "locked"' in log.read_text()
    statuses = sorted(run["status"] for run in ops_db(settings).job_runs.find({"job": "lake_census"}))
    assert statuses == ["skipped", "succeeded"]

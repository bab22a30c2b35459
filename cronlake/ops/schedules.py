"""Schedules as code: turn `crontab/schedules.yaml` into crontab lines, and run them under cron.

    python -m cronlake.ops.schedules list|diff|install|remove [--user | --cron-file PATH] [--settings-file F]
    python -m cronlake.ops.schedules exec ENTRY -- JOB [ARGS...]      (what a crontab line runs)

Every line this module writes ends with `# cronlake:<entry>`; it only ever replaces or removes lines carrying
that tag, so the user's own lines stay byte for byte as they were (python-crontab re-renders every line it
parses, e.g. `a%b` becomes `a %b`, so foreign lines are spliced as text and never re-rendered). Entries are
validated before anything is written: the schedule with python-crontab, the job name against the registry,
and the arguments with the job's own parser. Installing twice gives the same crontab text.

A line sets PATH, JAVA_HOME (found at install time) and CRONLAKE_ENV_FILE (cron passes no environment),
changes to the checkout and runs `exec`, which rotates `<state>/log/cron/<entry>.log` by size, appends the
job's output to it, expands `{today}`/`{yesterday}` (CRONLAKE_TIMEZONE) and runs the job through the runner:
an overlapping run finds the job's lock held and exits 75, which `exec` reports to cron as success.
"""

from __future__ import annotations

import argparse
import difflib
import getpass
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import yaml
from crontab import CronSlices, CronTab

from cronlake.core import jobs
from cronlake.core.cli import EXIT_LOCKED, one_line_errors
from cronlake.core.files import atomic_write
from cronlake.core.jobs import ArgumentsRejected, split_passthrough
from cronlake.core.settings import CHECKOUT, SettingError, load, mask_secret

SCHEDULES_FILE = CHECKOUT / "crontab" / "schedules.yaml"
TAG = "cronlake:"
TAGGED_LINE = re.compile(r"#\s*cronlake:(?P<name>[A-Za-z0-9_-]+)\s*$")
ENTRY_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
PLACEHOLDER = re.compile(r"\{(\w*)\}")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_KEEP = 3


class ScheduleError(Exception):
    """A schedule entry or target that cannot be installed; nothing has been written."""


@dataclass(frozen=True)
class Entry:
    name: str
    schedule: str
    job: str
    args: tuple[str, ...]
    description: str


def expand(args: list[str] | tuple[str, ...], today: date) -> list[str]:
    """Replace {today} and {yesterday} by ISO dates; any other {placeholder} is an error."""
    values = {"today": today.isoformat(), "yesterday": (today - timedelta(days=1)).isoformat()}

    def substitute(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise ScheduleError(f"unknown placeholder {match.group(0)} (known: {{today}}, {{yesterday}})")
        return values[match.group(1)]

    return [PLACEHOLDER.sub(substitute, arg) for arg in args]


def load_entries(path: Path = SCHEDULES_FILE) -> list[Entry]:
    """Read the schedules file and check its shape (not yet the jobs' arguments: see `validate`)."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScheduleError(f"{path}: cannot read schedules ({exc})") from None
    raw_entries = document.get("entries") if isinstance(document, dict) else None
    if not isinstance(raw_entries, list):
        raise ScheduleError(f"{path}: expected a top-level 'entries:' list")
    entries: list[Entry] = []
    for number, raw in enumerate(raw_entries, start=1):
        if not isinstance(raw, dict) or set(raw) - {"name", "schedule", "job", "args", "description"}:
            raise ScheduleError(f"{path}: entry {number}: expected keys name, schedule, job, args, description")
        name = str(raw.get("name", ""))
        if not ENTRY_NAME.match(name):
            raise ScheduleError(f"{path}: entry {number}: name {name!r} must match [A-Za-z0-9_-]+")
        if any(entry.name == name for entry in entries):
            raise ScheduleError(f"{path}: entry {name}: name used twice")
        args = raw.get("args") or []
        if not isinstance(args, list) or not all(isinstance(a, str | int | float) for a in args):
            raise ScheduleError(f"{path}: entry {name}: args must be a list of strings")
        entries.append(Entry(name, str(raw.get("schedule", "")).strip(), str(raw.get("job", "")),
                             tuple(str(a) for a in args), str(raw.get("description", "")).strip()))
    return entries


def validate(entry: Entry) -> None:
    """Raise ScheduleError unless cron accepts the schedule and the job's parser accepts the arguments."""
    if not CronSlices.is_valid(entry.schedule):
        raise ScheduleError(f"entry {entry.name}: invalid cron schedule {entry.schedule!r}")
    try:
        job = jobs.get(entry.job)
    except KeyError as exc:
        raise ScheduleError(f"entry {entry.name}: {exc.args[0]}") from None
    try:
        args = expand(entry.args, date.today())
    except ScheduleError as exc:
        raise ScheduleError(f"entry {entry.name}: {exc}") from None
    try:
        job.check_arguments(args)
    except ArgumentsRejected as exc:
        raise ScheduleError(f"entry {entry.name}: job {entry.job} rejects {shlex.join(args)!r}: {exc}") from None


@dataclass(frozen=True)
class Target:
    """Where the lines go: the invoking user's crontab, or a crontab file (a system one has a user field)."""

    cron_file: Path | None
    cron_user: str

    @property
    def system(self) -> bool:
        return self.cron_file is not None

    def describe(self) -> str:
        return str(self.cron_file) if self.cron_file else f"crontab of {getpass.getuser()}"

    def check(self) -> None:
        if self.cron_file is None:
            if shutil.which("crontab") is None:
                raise ScheduleError("no `crontab` command: install cron (apt-get install -y cron) or use --cron-file")
            return
        # Debian's cron silently ignores /etc/cron.d files whose names contain a dot or other characters.
        if self.cron_file.parent.name == "cron.d" and not ENTRY_NAME.match(self.cron_file.name):
            raise ScheduleError(f"{self.cron_file}: cron ignores cron.d files whose names are not [A-Za-z0-9_-]+")

    def read(self) -> str:
        if self.cron_file is not None:
            return self.cron_file.read_text(encoding="utf-8") if self.cron_file.exists() else ""
        result = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
        if result.returncode != 0:
            if "no crontab for" in result.stderr:
                return ""
            raise ScheduleError(f"crontab -l failed: {result.stderr.strip()}")
        return result.stdout

    def write(self, text: str) -> None:
        if self.cron_file is None:
            empty = not text.strip()
            command = ["crontab", "-r"] if empty else ["crontab", "-"]
            result = subprocess.run(command, input=None if empty else text, capture_output=True, text=True)
            if empty and "no crontab for" in result.stderr:
                return
            if result.returncode != 0:
                raise ScheduleError(f"{' '.join(command)} failed: {result.stderr.strip()}")
            return
        if not text.strip():
            self.cron_file.unlink(missing_ok=True)
            return
        atomic_write(self.cron_file, text, mode=0o644)  # cron refuses group- or world-writable files


def java_home() -> str:
    """JAVA_HOME of this shell, else the installation the `java` on PATH belongs to; '' when there is none."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    java = shutil.which("java")
    return str(Path(java).resolve().parent.parent) if java else ""


def python_path() -> Path:
    venv = CHECKOUT / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


def command(entry: Entry, settings_file: Path) -> str:
    """The shell command of one crontab line (cron runs it with /bin/sh and an almost empty environment)."""
    python = python_path()
    home = java_home()
    path = ":".join(dict.fromkeys(p for p in (str(python.parent), home and f"{home}/bin", SYSTEM_PATH) if p))
    variables = {"PATH": path, "JAVA_HOME": home, "CRONLAKE_ENV_FILE": str(settings_file)}
    assignments = " ".join(f"{key}={shlex.quote(value)}" for key, value in variables.items() if value)
    job = shlex.join([str(python), "-m", "cronlake.ops.schedules", "exec", entry.name, "--", entry.job,
                      *entry.args])
    return f"cd {shlex.quote(str(CHECKOUT))} && {assignments} {job}"


def render_line(entry: Entry, settings_file: Path, target: Target) -> str:
    """One crontab line, rendered by python-crontab (it escapes `%`, which cron would turn into newlines)."""
    tab = CronTab(tab="", user=False if target.system else None)
    item = tab.new(command=command(entry, settings_file), comment=TAG + entry.name,
                   user=target.cron_user if target.system else None)
    item.setall(entry.schedule)
    return item.render().strip()


def owned(line: str) -> str | None:
    """The entry name of a line this module wrote, else None."""
    match = TAGGED_LINE.search(line)
    return match.group("name") if match else None


def splice(text: str, lines: dict[str, str]) -> str:
    """The crontab text with our tagged lines replaced by `lines` (in place, new ones appended, others removed)."""
    result: list[str] = []
    pending = dict(lines)
    for line in text.splitlines():
        name = owned(line)
        if name is None:
            result.append(line)
        elif name in pending:
            result.append(pending.pop(name))
    result.extend(pending.values())
    return "\n".join(result) + "\n" if result else ""


def check_settings_file(settings_file: Path) -> list[str]:
    """Fail unless the file alone gives valid settings; warn about CRONLAKE_* variables cron will not see."""
    if not settings_file.exists():
        raise ScheduleError(f"settings file {settings_file} does not exist: cron needs one (create it from "
                            ".env.example, or pass --settings-file)")
    base = {key: value for key, value in os.environ.items() if not key.startswith("CRONLAKE_")}
    try:
        for_cron = load({**base, "CRONLAKE_ENV_FILE": str(settings_file)}).masked()
    except SettingError as exc:
        raise ScheduleError(f"settings file {settings_file}: {exc}") from None
    return [f"warning: {key} is {os.environ[key]} in this shell but {for_cron[key]} for cron "
            f"(cron only reads {settings_file})"
            for key in sorted(for_cron) if key in os.environ and mask_secret(os.environ[key].strip()) != for_cron[key]]


def planned(entries: list[Entry], settings_file: Path, target: Target) -> dict[str, str]:
    for entry in entries:
        validate(entry)
    lines = {entry.name: render_line(entry, settings_file, target) for entry in entries}
    parsed = CronTab(tab="\n".join(lines.values()), user=False if target.system else None)
    for name in lines:  # what we render must read back as one valid, enabled, tagged cron job
        found = list(parsed.find_comment(TAG + name))
        if len(found) != 1 or not found[0].is_valid() or not found[0].is_enabled():
            raise ScheduleError(f"entry {name}: rendered line does not parse back: {lines[name]!r}")
    return lines


def show_list(entries: list[Entry], current: str, settings_file: Path, target: Target) -> None:
    installed = {owned(line): line for line in current.splitlines() if owned(line)}
    for entry in entries:
        line = installed.pop(entry.name, None)
        if line is None:
            state = "not installed"
        else:
            state = "installed" if line == render_line(entry, settings_file, target) else "installed, differs"
        print(f"{entry.name:<24} {entry.schedule:<14} {shlex.join([entry.job, *entry.args]):<36} [{state}]")
        if entry.description:
            print(f"{'':<24} {entry.description}")
    for name in installed:
        print(f"{name:<24} {'':<14} {'(not in the schedules file)':<36} [installed, would be removed]")


def rotate(log: Path, max_bytes: int, keep: int) -> None:
    """Rename log → log.1 → … → log.<keep> once it reaches max_bytes (the oldest is dropped)."""
    if not log.exists() or log.stat().st_size < max_bytes:
        return
    for index in range(keep - 1, 0, -1):
        older = log.with_name(f"{log.name}.{index}")
        if older.exists():
            os.replace(older, log.with_name(f"{log.name}.{index + 1}"))
    os.replace(log, log.with_name(f"{log.name}.1"))


def execute(entry_name: str, job_argv: list[str], max_bytes: int, keep: int) -> int:
    """What cron runs: rotate the entry's log, send all output there, run the job, report a skip as success."""
    try:
        settings = load()
        argv = expand(job_argv, datetime.now(settings.tz).date())
    except (SettingError, ScheduleError) as exc:
        print(f"cronlake {entry_name}: {exc}", file=sys.stderr)  # cron mails this to the crontab's owner
        return 2
    log = settings.state_path / "log" / "cron" / f"{entry_name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    rotate(log, max_bytes, keep)
    descriptor = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(descriptor, 1)  # the job, its Spark JVM and any child process all write to the log
    os.dup2(descriptor, 2)
    os.close(descriptor)
    print(json.dumps({"ts": datetime.now().astimezone().isoformat(timespec="seconds"), "cron_entry": entry_name,
                      "argv": argv, "pid": os.getpid()}), flush=True)
    from cronlake.ops import run

    code = run.main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    return 0 if code == EXIT_LOCKED else code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cronlake.ops.schedules", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", required=True)
    for action, text in (("list", "show the entries and whether each is installed"),
                         ("diff", "show what install (or remove, with --remove) would change"),
                         ("install", "write or update our lines (idempotent)"),
                         ("remove", "delete our lines, and only ours")):
        sub = actions.add_parser(action, help=text)
        where = sub.add_mutually_exclusive_group()
        where.add_argument("--user", action="store_true", help="the invoking user's crontab (default)")
        where.add_argument("--cron-file", type=Path, help="a system crontab file, e.g. /etc/cron.d/cronlake")
        sub.add_argument("--cron-user", default=getpass.getuser(),
                         help="user field of --cron-file lines (default: %(default)s)")
        sub.add_argument("--settings-file", type=Path,
                         default=Path(os.environ.get("CRONLAKE_ENV_FILE") or CHECKOUT / ".env"),
                         help="settings file the jobs read under cron (default: $CRONLAKE_ENV_FILE or .env)")
        sub.add_argument("--schedules", type=Path, default=SCHEDULES_FILE, help="default: %(default)s")
        if action == "diff":
            sub.add_argument("--remove", action="store_true", help="diff of remove instead of install")
    run_entry = actions.add_parser("exec", help="run one entry's job (used by the crontab lines)",
                                   usage="%(prog)s [--log-max-bytes N] [--log-keep N] ENTRY -- JOB [ARGS...]")
    run_entry.add_argument("entry")
    run_entry.add_argument("--log-max-bytes", type=int, default=LOG_MAX_BYTES)
    run_entry.add_argument("--log-keep", type=int, default=LOG_KEEP)
    return parser


@one_line_errors(ScheduleError)
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    job_argv: list[str] = []
    if argv[:1] == ["exec"]:  # everything after `--` belongs to the job, options included
        argv, job_argv = split_passthrough(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.action == "exec":
        if not job_argv:
            parser.error("exec needs the job after `--`: exec ENTRY -- JOB [ARGS...]")
        return execute(args.entry, job_argv, args.log_max_bytes, args.log_keep)
    target = Target(args.cron_file.resolve() if args.cron_file else None, args.cron_user)
    settings_file = args.settings_file.resolve()
    target.check()
    entries = load_entries(args.schedules)
    current = target.read()
    if args.action == "list":
        show_list(entries, current, settings_file, target)
        return 0
    removing = args.action == "remove" or (args.action == "diff" and args.remove)
    wanted = splice(current, {} if removing else planned(entries, settings_file, target))
    if not removing:
        for warning in check_settings_file(settings_file):
            print(warning, file=sys.stderr)
    if args.action == "diff":
        sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), wanted.splitlines(True),
                                                   target.describe(), f"{target.describe()} (after)"))
        return 0
    if wanted == current:
        print(f"{target.describe()}: up to date, nothing written")
        return 0
    target.write(wanted)
    ours = sum(1 for line in wanted.splitlines() if owned(line))
    print(f"{target.describe()}: {'removed cronlake lines' if removing else f'{ours} cronlake lines installed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

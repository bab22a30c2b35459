"""Effective settings of a cronlake deployment, read from the environment and an optional `.env` file.

Every component reads its endpoints from here and nowhere else, so the same code runs on one laptop
(embedded defaults) and on the Docker/Hadoop cluster (settings from `.env` or the container environment).
The environment wins over the `.env` file; the file is `$CRONLAKE_ENV_FILE`, else `.env` in the checkout.
The checkout is `$CRONLAKE_CHECKOUT`, else the folder holding the `cronlake` package: under spark-submit the
package is imported from the `--py-files` zip, so `scripts/submit` passes the checkout it runs from.

Run `python -m cronlake.core.settings` to print the effective settings with secrets masked.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronlake.core.cli import one_line_errors

CHECKOUT = Path(os.environ.get("CRONLAKE_CHECKOUT") or Path(__file__).absolute().parents[2])
NOT_SETTINGS = ("CRONLAKE_ENV_FILE", "CRONLAKE_CHECKOUT")  # where settings are read from, not settings


class SettingError(Exception):
    """A setting is missing, malformed or points at something that does not answer.

    The message names the setting's environment variable first, so a one-line error tells the operator
    exactly what to fix.
    """


@dataclass(frozen=True)
class Settings:
    """Every endpoint and knob of a deployment; field name `x` is environment variable `CRONLAKE_X`."""

    lake_root: str
    webhdfs_url: str
    webhdfs_user: str
    lake_replication: str
    kafka_bootstrap: str
    mongo_uri: str
    mongo_db: str
    mongo_ops_db: str
    spark_master: str
    timezone: str
    state_dir: str
    # Every other CRONLAKE_* variable (environment over .env), for the settings a pipeline declares itself.
    extra: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def lake_scheme(self) -> str:
        return urlsplit(self.lake_root).scheme

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir)

    def masked(self) -> dict[str, str]:
        """The settings as environment variables (the pipelines' own too), passwords in URIs replaced by ***."""
        core = {env_name(name): mask_secret(str(getattr(self, name))) for name in CORE_FIELDS}
        return {**core, **{name: mask_secret(value) for name, value in sorted(self.extra.items())}}

    def get(self, name: str, default: str, check: Callable[[str, str], None] | None = None) -> str:
        """A pipeline's own setting `CRONLAKE_…` (environment over .env over `default`), checked by
        `check(name, value)`, which raises SettingError naming the variable."""
        value = self.extra.get(name, default).strip()
        if check is not None:
            check(name, value)
        return value


DEFAULTS: dict[str, str] = {
    "lake_root": (CHECKOUT / "var" / "lake").as_uri(),
    "webhdfs_url": "",
    "webhdfs_user": "cronlake",
    "lake_replication": "",  # HDFS block replication of every lake write; empty: the file system's default
    "kafka_bootstrap": "127.0.0.1:9092",
    "mongo_uri": "mongodb://127.0.0.1:27017",
    "mongo_db": "cronlake",
    "mongo_ops_db": "cronlake_ops",
    "spark_master": "local[*]",
    "timezone": "Europe/Paris",
    "state_dir": str(CHECKOUT / "var"),
}
CORE_FIELDS = tuple(DEFAULTS)

SPARK_MASTER_PATTERN = re.compile(r"^(local(\[(\*|\d+)(,\d+)?\])?|spark://[^/\s]+:\d+(,[^/\s]+:\d+)*|yarn|k8s://\S+)$")
HOST_PORT_PATTERN = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


def env_name(field_name: str) -> str:
    return "CRONLAKE_" + field_name.upper()


def mask_secret(value: str) -> str:
    """Hide the password of a `scheme://user:password@host` URI; leave anything else unchanged."""
    parts = urlsplit(value)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    return value


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a `.env` file: `KEY=value` lines, `#` comments, optional `export` and surrounding quotes."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise SettingError(f"{path}:{number}: expected KEY=value, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def load(environ: dict[str, str] | None = None) -> Settings:
    """Build and validate the settings; raise SettingError naming the first bad setting."""
    environ = dict(os.environ if environ is None else environ)
    env_file = Path(environ.get("CRONLAKE_ENV_FILE") or CHECKOUT / ".env")
    if "CRONLAKE_ENV_FILE" in environ and not env_file.exists():
        raise SettingError(f"CRONLAKE_ENV_FILE: no such file {env_file}")
    from_file = read_env_file(env_file) if env_file.is_file() else {}
    merged = {**from_file, **{k: v for k, v in environ.items() if k.startswith("CRONLAKE_")}}
    values = {name: merged.get(env_name(name), DEFAULTS[name]).strip() for name in CORE_FIELDS}
    extra = {k: v for k, v in merged.items()
             if k.startswith("CRONLAKE_") and k not in {env_name(n) for n in CORE_FIELDS} and k not in NOT_SETTINGS}
    settings = Settings(**values, extra=extra)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Check the shape of every setting (not whether its server answers: see `checks`)."""
    scheme = settings.lake_scheme
    if scheme not in ("file", "hdfs"):
        raise SettingError(
            f"CRONLAKE_LAKE_ROOT: unsupported scheme {scheme or '(none)'!r} in {settings.lake_root!r}; "
            "use file:///absolute/path or hdfs://namenode:8020/path"
        )
    if scheme == "file" and not urlsplit(settings.lake_root).path.startswith("/"):
        raise SettingError(f"CRONLAKE_LAKE_ROOT: file:// root must be an absolute path, got {settings.lake_root!r}")
    if scheme == "hdfs" and not settings.webhdfs_url:
        raise SettingError("CRONLAKE_WEBHDFS_URL: required when CRONLAKE_LAKE_ROOT is hdfs:// (e.g. http://namenode:9870)")
    if settings.webhdfs_url and urlsplit(settings.webhdfs_url).scheme not in ("http", "https"):
        raise SettingError(f"CRONLAKE_WEBHDFS_URL: expected http(s)://host:port, got {settings.webhdfs_url!r}")
    if settings.lake_replication and not (settings.lake_replication.isdigit() and int(settings.lake_replication) > 0):
        raise SettingError(f"CRONLAKE_LAKE_REPLICATION: expected a positive integer (HDFS replicas of a lake file), "
                           f"got {settings.lake_replication!r}")
    servers = [s.strip() for s in settings.kafka_bootstrap.split(",") if s.strip()]
    if not servers or not all(HOST_PORT_PATTERN.match(s) for s in servers):
        raise SettingError(
            f"CRONLAKE_KAFKA_BOOTSTRAP: expected host:port[,host:port], got {settings.kafka_bootstrap!r}"
        )
    if urlsplit(settings.mongo_uri).scheme not in ("mongodb", "mongodb+srv"):
        raise SettingError(
            f"CRONLAKE_MONGO_URI: expected mongodb://host:port, got {mask_secret(settings.mongo_uri)!r}"
        )
    for name in ("mongo_db", "mongo_ops_db"):
        if not re.fullmatch(r"[A-Za-z0-9_\-]{1,63}", getattr(settings, name)):
            raise SettingError(f"{env_name(name)}: invalid MongoDB database name {getattr(settings, name)!r}")
    if not SPARK_MASTER_PATTERN.match(settings.spark_master):
        raise SettingError(
            f"CRONLAKE_SPARK_MASTER: expected local[*], local[N], spark://host:port or yarn, "
            f"got {settings.spark_master!r}"
        )
    try:
        ZoneInfo(settings.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SettingError(f"CRONLAKE_TIMEZONE: unknown time zone {settings.timezone!r}") from exc
    if not Path(settings.state_dir).is_absolute():
        raise SettingError(f"CRONLAKE_STATE_DIR: must be an absolute path, got {settings.state_dir!r}")


def check_http_url(name: str, value: str) -> None:
    if urlsplit(value).scheme not in ("http", "https"):
        raise SettingError(f"{name}: expected an http(s) URL, got {value!r}")


def check_topic_name(name: str, value: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9._\-]{1,249}", value):
        raise SettingError(f"{name}: invalid Kafka topic name {value!r}")


@one_line_errors(SettingError)
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cronlake.core.settings",
        description="Print the effective cronlake settings (environment over .env over defaults), secrets masked.",
    )
    parser.add_argument("--check", action="store_true", help="also check that Kafka, MongoDB and the lake answer")
    args = parser.parse_args(argv)
    settings = load()
    for key, value in settings.masked().items():
        print(f"{key}={value}")
    if args.check:
        from cronlake.core import checks

        checks.require_all(settings)
        print("# Kafka, MongoDB and the lake answer")
    return 0

if __name__ == "__main__":
    from cronlake.core.settings import main as package_main  # one SettingError class, not a __main__ twin

    sys.exit(package_main())

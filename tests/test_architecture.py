"""The shape of the code base: a core that knows no pipeline, layers that import downwards only, no import loops,
and every job declared once in the registry."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO

from cronlake.core import jobs

LAYERS = {  # a package may import the packages listed for it, and itself
    "cronlake.core": set(),
    "cronlake.contracts": {"cronlake.core"},
    "ingest": {"cronlake.core", "cronlake.contracts"},
    "process": {"cronlake.core", "cronlake.contracts"},
    "dashboard": {"cronlake.core", "cronlake.contracts"},
    "api": {"cronlake.core", "cronlake.contracts"},
    "cronlake.ops": {"cronlake.core", "cronlake.contracts", "ingest", "process"},
}
PRODUCT = ("cronlake", "ingest", "process", "dashboard", "api")


def pipelines() -> set[str]:
    """Pipeline names, from the folders that hold them (a new pipeline is a sibling folder)."""
    names = {p.stem for p in (REPO / "cronlake" / "contracts").glob("*.py") if p.stem != "__init__"}
    for stage in ("ingest", "process", "dashboard/pages"):
        names |= {p.name for p in (REPO / stage).iterdir() if (p / "__init__.py").exists()}
    return names


def modules() -> dict[str, Path]:
    found = {}
    for package in PRODUCT:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def layer(module: str) -> str | None:
    return next((name for name in sorted(LAYERS, key=len, reverse=True)
                 if module == name or module.startswith(name + ".")), None)


def imports(path: Path, module: str, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in PRODUCT}


def test_the_core_names_no_pipeline():
    names = pipelines()
    assert {"velib", "retail"} <= names
    pattern = re.compile("|".join(sorted(names)), re.IGNORECASE)
    offenders = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
                 for path in sorted((REPO / "cronlake" / "core").rglob("*.py"))
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
                 if pattern.search(line)]
    assert offenders == []


def test_layers_import_downwards_only():
    known = modules()
    wrong = []
    for module, path in known.items():
        own = layer(module)
        if own is None:
            continue
        for target in imports(path, module, top_level_only=False):
            other = layer(target)
            if other is not None and other != own and other not in LAYERS[own] and target in known:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_no_import_loops():
    known = modules()
    graph = {module: {t for t in imports(path, module, top_level_only=True) if t in known and t != module}
             for module, path in known.items()}
    loops, state = [], {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                loops.append(" -> ".join([*trail[trail.index(target):], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert loops == []


def test_every_job_module_declares_its_job_once():
    registered = jobs.registry()
    declaring = {job.run.__module__ for job in registered.values()}
    for module, path in modules().items():
        if re.search(r"^JOB = Job\(", path.read_text(encoding="utf-8"), re.M):
            assert module in declaring, f"{module} declares a JOB the registry does not find"
    for job in registered.values():
        assert job.build_parser().prog == job.name or job.name in (job.build_parser().prog or "")

"""Churn model versions in the lake and the pointer to the promoted one (job `churn_model`: promote, rollback, show).

A version is the folder `models/churn_rf/<version>/`: the Spark pipeline in `pipeline/` and `manifest.json`
(metrics, feature schema, training data version, threshold, seed), written last, so a version without a
manifest is unfinished and cannot be promoted. The pointer `models/churn_rf/promoted.json` names the promoted
version and keeps the previously promoted ones (`history`, oldest first) for `rollback`; it is replaced
atomically through the lake's `put_text`, and the stream reads it at the start of every micro-batch.

    python -m cronlake.ops.run churn_model show
    python -m cronlake.ops.run churn_model promote 20261202T160000Z
    python -m cronlake.ops.run churn_model rollback
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cronlake.contracts.churn import MODEL_RUNS, MODELS_PATH, POINTER_PATH, model_path
from cronlake.core.jobs import Job
from cronlake.core.lake import Lake
from cronlake.core.runner import JobError, RunContext, utcnow
from cronlake.core.sink import database, upsert


def manifest_path(version: str) -> str:
    return f"{model_path(version)}/manifest.json"


def pipeline_path(version: str) -> str:
    return f"{model_path(version)}/pipeline"


def read_pointer(lake: Lake) -> dict[str, Any] | None:
    """The pointer document, or None before the first promotion."""
    if not lake.exists(POINTER_PATH):
        return None
    return json.loads(lake.read_text(POINTER_PATH))


def read_manifest(lake: Lake, version: str) -> dict[str, Any]:
    return json.loads(lake.read_text(manifest_path(version)))


def versions(lake: Lake) -> list[str]:
    """Complete versions (with a manifest), oldest first."""
    names = {f.path.split("/")[2] for f in lake.list(MODELS_PATH, recursive=True)
             if f.path.endswith("/manifest.json") and f.path.count("/") == 3}
    return sorted(names)


def write_pointer(lake: Lake, version: str, history: list[str], action: str) -> dict[str, Any]:
    if not lake.exists(manifest_path(version)):
        raise JobError(f"no complete model version {version!r} under {MODELS_PATH}/ (known: "
                       f"{', '.join(versions(lake)) or 'none'})")
    pointer = {"version": version, "history": history, "action": action, "at": utcnow().isoformat()}
    lake.put_text(POINTER_PATH, json.dumps(pointer, indent=1) + "\n")
    return pointer


def promote(lake: Lake, version: str) -> dict[str, Any]:
    """Point at `version`; the version promoted so far goes to the history."""
    current = read_pointer(lake)
    history = [*current["history"], current["version"]] if current else []
    if current and current["version"] == version:
        history = current["history"]
    return write_pointer(lake, version, history, "promote")


def rollback(lake: Lake) -> dict[str, Any]:
    """Point back at the version promoted before the current one."""
    current = read_pointer(lake)
    if not current or not current["history"]:
        raise JobError("nothing to roll back to: no version was promoted before the current one")
    return write_pointer(lake, current["history"][-1], current["history"][:-1], "rollback")


def record_promotion(context: RunContext, pointer: dict[str, Any]) -> None:
    """Mark the promoted version in `churn_model_runs` (the dashboard shows it), the others as not promoted."""
    db = database(context.settings, MODEL_RUNS)
    db[MODEL_RUNS.name].update_many({"promoted": True, "_id": {"$ne": pointer["version"]}},
                                    {"$set": {"promoted": False}})
    upsert(db, MODEL_RUNS, [{"version": pointer["version"], "promoted": True, "promoted_at": utcnow()}])
    context.log("model.pointer", **pointer)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=JOB.name, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("show", help="print the promoted version, its history and the complete versions")
    chosen = commands.add_parser("promote", help="promote a complete version")
    chosen.add_argument("version")
    commands.add_parser("rollback", help="promote again the version promoted before the current one")
    return parser


def run(context: RunContext, args: argparse.Namespace) -> None:
    lake = context.lake
    if args.command == "show":
        print(json.dumps({"pointer": read_pointer(lake), "versions": versions(lake)}, indent=1))
        return
    pointer = promote(lake, args.version) if args.command == "promote" else rollback(lake)
    record_promotion(context, pointer)
    print(f"promoted {pointer['version']} ({args.command})")


JOB = Job("churn_model", build_parser, run, needs=("lake",))


if __name__ == "__main__":
    sys.exit(JOB.main())

"""The main demo: the Velib pipeline end to end on the recorded snapshots, on whatever stack the settings name.

Steps, each through the job runner exactly as cron runs them (locks, run records, JSON step logs):
replay N recorded snapshots into Kafka (`velib_produce`, one run per snapshot, as the minute cron would), land
the topic as files (`velib_land`), compute the daily statistics (`velib_daily`) and the time each station spends
empty or full (`velib_capacity`, the Capacity page), train the "will it be full" model (`velib_train`), fold the
topic into live averages (`velib_stream` until idle), count the lake (`lake_census`); then print a summary. Each
run continues where the previous one stopped (the replay position is kept in the state folder), so running it
again adds the next snapshots.

    python -m cronlake.ops.demo [--snapshots 72] [--quiet]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

from cronlake.contracts import velib
from cronlake.core import settings as settings_module
from cronlake.core.mongo import data_db, ops_db
from cronlake.core.settings import CHECKOUT, SettingError
from cronlake.ops import run

HISTORY = CHECKOUT.parent / "shared" / "data" / "velib" / "history_2022-05-12_to_2022-06-01.csv.gz"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cronlake.ops.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--snapshots", type=int, default=72,
                        help="recorded snapshots to replay this time (default 72, about two days)")
    parser.add_argument("--replay-file", type=Path, default=HISTORY, help="the recorded history (CSV, gzip)")
    parser.add_argument("--quiet", action="store_true", help="keep the jobs' JSON step logs out of the terminal")
    return parser


def step(title: str, arguments: list[str], quiet: bool) -> None:
    """Run one job through the runner; stop the demo with its exit code if it fails."""
    print(f"==> {title}: python -m cronlake.ops.run {' '.join(arguments)}", flush=True)
    sink = io.StringIO() if quiet else sys.stdout
    with contextlib.redirect_stdout(sink):
        code = run.main(arguments)
    if code not in (0, 75):
        raise SystemExit(f"demo: {arguments[0]} failed (exit {code}); its run record is in job_runs")


def summary(settings: settings_module.Settings) -> list[str]:
    data, ops = data_db(settings), ops_db(settings)
    days = sorted(data.velib_station_daily.distinct("day"))
    snapshots = sum(d.get("samples", 0) for d in data.velib_station_daily.find({}, {"samples": 1}))
    archived = sum(r.get("files_archived", 0) for r in ops.job_runs.find({"job": "velib_daily"}, {"files_archived": 1}))
    quarantined = sum(r.get("records_quarantined", 0) for r in ops.job_runs.find({}, {"records_quarantined": 1}))
    model = data.velib_model_runs.find_one(sort=[("trained_at", -1)])
    lines = [
        f"stations with statistics : {len(data.velib_station_daily.distinct('station_code'))}",
        f"station snapshots        : {snapshots} over {len(days)} local days"
        + (f" ({days[0]} .. {days[-1]})" if days else ""),
        f"live stations / zones    : {data.velib_live_station.count_documents({})} / "
        f"{data.velib_live_zone.count_documents({})}",
        f"capacity (station-days)  : {data[velib.STATION_CAPACITY.name].count_documents({})} (dashboard /capacity)",
        f"files archived           : {archived} (records quarantined: {quarantined})",
    ]
    if model:
        for side in ("model", "baseline"):
            m = model["metrics"][side]
            lines.append(f"{side + ' (' + model['version'] + ')' if side == 'model' else 'baseline full at t-1':<25}: "
                         f"AUC {m['auc']:.3f}  precision {m['precision']:.3f}  recall {m['recall']:.3f}  "
                         f"F1 {m['f1']:.3f}")
    lines.append(f"lake                     : {settings.lake_root}")
    lines.append(f"job runs                 : {ops.job_runs.count_documents({})} in {settings.mongo_ops_db}.job_runs")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.replay_file.is_file():
        print(f"error: recorded history not found: {args.replay_file}", file=sys.stderr)
        return 2
    try:
        settings = settings_module.load()
    except SettingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    produce = ["velib_produce", "--source", "replay", "--replay-file", str(args.replay_file)]
    print(f"==> replaying {args.snapshots} recorded snapshots into Kafka topic {velib.topic(settings)}", flush=True)
    for _ in range(args.snapshots):
        with contextlib.redirect_stdout(io.StringIO()):
            code = run.main(produce)
        if code != 0:
            raise SystemExit(f"demo: velib_produce failed (exit {code}); see job_runs")
    step("land the topic as files", ["velib_land"], args.quiet)
    step("daily statistics", ["velib_daily"], args.quiet)
    step("capacity sizing", ["velib_capacity"], args.quiet)
    step("train the model", ["velib_train"], args.quiet)
    step("live averages", ["velib_stream", "--starting-offsets", "earliest", "--until-idle", "15"], args.quiet)
    step("lake census", ["lake_census"], args.quiet)
    print(f"\ncronlake demo done in {time.monotonic() - started:.0f} s")
    for line in summary(settings):
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""OpenLineage run events for batch runs, through the `openlineage-python` client's file transport.

A claim emits START (its landing files as inputs), then COMPLETE (the dataset versions it published as outputs,
with the upstream versions and landing files as inputs) or FAIL. Events are JSON lines appended to
`CRONLAKE_OPENLINEAGE_FILE` (default `<state>/lineage/openlineage.jsonl`), which Marquez or any OpenLineage
consumer can ingest. Datasets are named the way OpenLineage names files: namespace = the lake root URI, name = the
path in the lake; a published version names its table folder and carries the version in a facet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from cronlake.core.runner import utcnow

if TYPE_CHECKING:
    from openlineage.client import OpenLineageClient

    from cronlake.core.runner import RunContext
    from cronlake.core.settings import Settings

NAMESPACE = "cronlake"
PRODUCER = "https://github.com/cronlake/cronlake"


def events_file(settings: Settings) -> str:
    return settings.get("CRONLAKE_OPENLINEAGE_FILE", str(settings.state_path / "lineage" / "openlineage.jsonl"))


@cache
def _client(path: str) -> OpenLineageClient:
    from pathlib import Path

    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.file import FileConfig, FileTransport

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=path, append=True)))


def emit(context: RunContext, state: str, inputs: Iterable[Mapping[str, Any]] = (),
         outputs: Iterable[Mapping[str, Any]] = ()) -> None:
    """One run event; `inputs`/`outputs` are {name, version?} dicts (a lake path or a dataset's table path)."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet

    namespace = context.settings.lake_root

    def facets(item: Mapping[str, Any]) -> dict[str, Any]:
        version = item.get("version")
        return {} if version is None else {"version": DatasetVersionDatasetFacet(datasetVersion=str(version))}

    event = RunEvent(
        eventType=RunState(state), eventTime=utcnow().isoformat(), producer=PRODUCER,
        run=Run(runId=context.run_uuid), job=Job(namespace=NAMESPACE, name=context.job),
        inputs=[InputDataset(namespace=namespace, name=i["name"], facets=facets(i)) for i in inputs],
        outputs=[OutputDataset(namespace=namespace, name=o["name"], facets=facets(o)) for o in outputs],
    )
    _client(events_file(context.settings)).emit(event)

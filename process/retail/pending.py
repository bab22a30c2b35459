"""Reading a versioned dataset as the run sees it: its current version plus what the run's claim publishes at
commit (a Delta version becomes visible only at commit, but serving documents are upserted before it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cronlake.core.contracts import Dataset
from cronlake.core.protocol import Claim
from cronlake.core.runner import RunContext

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def read_with_pending(context: RunContext, dataset: Dataset, where: dict[str, list[str]],
                      claim: Claim | None = None) -> DataFrame:
    from pyspark.sql import functions as F

    frame = dataset.read(context.spark, context.lake, where)
    pending = claim.published.get(dataset.name) if claim is not None else None
    if pending is None:
        return frame
    mine = pending[1]
    for column, values in where.items():
        mine = mine.where(F.col(column).isin(list(values)))
    return frame.unionByName(mine)

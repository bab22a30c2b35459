"""The one way jobs write MongoDB serving collections: keyed upserts that also create the collection's indexes.

Writers have write rights, readers (the dashboard's read-only user on the cluster) may not: so every index a
reader's queries use is declared on the `Collection` and created here, by the job that fills it, once per
process. Documents are addressed by `_id` (a primary-key lookup on any server), built from the collection's
key; a unique index on the key fields keeps the contract.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReplaceOne, UpdateOne
from pymongo.database import Database

from cronlake.core.contracts import Collection
from cronlake.core.mongo import data_db, ops_db
from cronlake.core.settings import Settings

_indexed: set[tuple[str, str, str]] = set()


def database(settings: Settings, collection: Collection) -> Database:
    return ops_db(settings) if collection.database == "ops" else data_db(settings)


def index_spec(fields: tuple[str, ...]) -> list[tuple[str, int]]:
    return [(name.removeprefix("-"), DESCENDING if name.startswith("-") else ASCENDING) for name in fields]


def ensure_indexes(db: Database, collection: Collection) -> None:
    """The unique key index and every declared read index (idempotent; done once per process and database)."""
    marker = (db.client.address and str(db.client.address) or "", db.name, collection.name)
    if marker in _indexed:
        return
    target = db[collection.name]
    if collection.key and collection.key != ("_id",):
        target.create_index(index_spec(collection.key), unique=True)
    for fields in collection.indexes:
        target.create_index(index_spec(fields))
    _indexed.add(marker)


def upsert(db: Database, collection: Collection, documents: Iterable[Mapping[str, Any]], replace: bool = False
           ) -> int:
    """Upsert `documents` by their `_id` (from the key); `$set` of the declared fields, or the whole document
    with `replace`. Returns how many documents were written."""
    ensure_indexes(db, collection)
    operations: list[UpdateOne | ReplaceOne] = []
    for document in documents:
        document_id = document.get("_id") or collection.document_id(document)
        body = {name: document[name] for name in collection.fields if name in document}
        # The replacement names its `_id` too: nx-27017 would otherwise give an upserted document a new ObjectId.
        operations.append(ReplaceOne({"_id": document_id}, {"_id": document_id, **body}, upsert=True) if replace
                          else UpdateOne({"_id": document_id}, {"$set": body}, upsert=True))
    if operations:
        db[collection.name].bulk_write(operations, ordered=False)
    return len(operations)

"""Test helper: the indexes a MongoDB collection has, against the ones its contract declares.

Indexes are compared by their fields (in order) and uniqueness: nx-27017, the embedded server, reports every key
as ascending whatever direction it was created with.
"""

from __future__ import annotations

from pymongo.database import Database

from cronlake.core.contracts import Collection

Index = tuple[tuple[str, ...], bool]


def declared_indexes(collection: Collection) -> set[Index]:
    """(fields, unique) of every index the contract asks for, plus the `_id` index every collection has."""
    wanted = {(("_id",), False)}
    if collection.key != ("_id",):
        wanted.add((collection.key, True))
    wanted |= {(tuple(name.removeprefix("-") for name in fields), False) for fields in collection.indexes}
    return wanted


def server_indexes(db: Database, collection: Collection) -> set[Index]:
    """(fields, unique) of every index the server has on the collection (the `_id` index counted as not unique)."""
    return {(tuple(name for name, _ in info["key"]), bool(info.get("unique")) and index != "_id_")
            for index, info in db[collection.name].index_information().items()}

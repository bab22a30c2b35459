"""Start the embedded MongoDB-wire server, nx-27017, with one upstream bug worked around.

nx-27017 0.8.1 (through neosqlite) stores a datetime given to `$set`, `$push`… on an existing document as a
plain string ("2026-11-23 18:20:52.176000"), while inserts and upserts that create the document store a real
date. Real MongoDB stores a date in every case, and cronlake's code relies on that. This launcher hands such
datetimes to neosqlite's update path the way its insert path encodes them (`{"$date": iso}`), then runs the
unchanged server: same command-line options as `nx-27017`.

    python -m cronlake.ops.embedded_mongo --host 127.0.0.1 --port 27017 --data-dir var/mongo
"""

from __future__ import annotations

import datetime
import sys
from typing import Any


def patch_update_dates() -> None:
    import neosqlite.collection.query_helper._sql_updates as sql_updates
    from neosqlite.binary import Binary

    class StoredDate(Binary):
        """Rides neosqlite's Binary branch (serialised with json()), encoded as its own datetimes are."""

        def __new__(cls, value: datetime.datetime) -> StoredDate:
            stored = super().__new__(cls, b"")
            stored.value = value
            return stored

        def encode_for_storage(self) -> dict:
            return {"$date": self.value.isoformat()}

    convert_original = sql_updates._convert_bytes_to_binary

    def convert(value: Any) -> Any:
        if isinstance(value, datetime.datetime):
            return StoredDate(value)
        return convert_original(value)

    sql_updates._convert_bytes_to_binary = convert


def main() -> int:
    patch_update_dates()
    from nx_27017.nx_27017 import main as server_main

    sys.argv[0] = "nx-27017"
    return server_main() or 0


if __name__ == "__main__":
    sys.exit(main())

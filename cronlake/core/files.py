"""Local files written atomically: a reader (or a crash) sees the old content or the whole new one, never a part.

`atomic_write` writes a hidden temporary sibling, fsyncs it, renames it over the target and fsyncs the folder.
`JsonState` is a small JSON document kept that way (producer high-water marks, backfill progress, pending ranges).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: Path, data: bytes | str | Callable[[IO[bytes]], None], mode: int | None = None) -> Path:
    """Replace `path` with `data` (bytes, text, or a function writing into the open binary file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(temporary, "xb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            temporary.chmod(mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
    return path


def fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class JsonState:
    """A JSON document in one local file, read once and saved atomically."""

    def __init__(self, path: Path, default: Any = None):
        self.path = path
        self.value: Any = json.loads(path.read_text(encoding="utf-8")) if path.exists() else default

    def save(self) -> None:
        atomic_write(self.path, json.dumps(self.value, sort_keys=True, ensure_ascii=False) + "\n")

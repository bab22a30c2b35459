"""Lake storage: one small interface over the local filesystem, WebHDFS and Hadoop's FileSystem API.

Paths are relative to the lake root and use `/` (for example `landing/<source>/batch-0001.csv`). Zones:

    landing/<source>/      raw files as they arrive
    processed/<dataset>/   cleaned outputs (Parquet), written by Spark jobs
    archive/<source>/      inputs whose outputs are durably committed
    quarantine/<source>/   inputs that could not be processed, each with `<name>.reason.json` beside it
    checkpoints/<job>/     run manifests and streaming checkpoints
    models/<model>/        trained models by version

`LocalLake` and `WebHdfsLake` serve plain-Python scripts (ingest, consumers); `HadoopFsLake` serves Spark
drivers through the JVM, so a Spark job moves files with the same calls on `file://` and `hdfs://` roots.
Names starting with `_` or `.` are hidden from listings, as Spark and Hadoop hide them.

A write goes to a hidden temporary sibling renamed over the target in one step (HDFS: rename with OVERWRITE,
through WebHDFS `renameoptions=OVERWRITE` or Hadoop's FileContext), so a reader sees the old file or the new one,
never none. A remote failure is raised as `LakeError`, one line naming the cause: safe mode, permission denied,
connection refused, a host name that does not resolve.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cronlake.core.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

ZONES = ("landing", "processed", "archive", "quarantine", "checkpoints", "models")


@dataclass(frozen=True)
class LakeFile:
    path: str
    size: int
    modified: float


class LakeError(OSError):
    """A lake operation failed on the server's side; the message is one line naming the cause."""


CAUSES = (
    (("SafeModeException", "safe mode"), "the NameNode is in safe mode"),
    (("AccessControlException", "Permission denied"), "permission denied"),
    (("Connection refused", "ConnectException", "ECONNREFUSED"), "connection refused"),
    (("NameResolutionError", "Failed to resolve", "UnknownHostException", "Name or service not known",
      "nodename nor servname"), "host name does not resolve"),
)


def first_line(exc: BaseException) -> str:
    """The first meaningful line of an exception: the Java exception for a Py4J error, not its stack."""
    java = getattr(exc, "java_exception", None)
    text = str(java.toString()) if java is not None else str(exc)
    lines = [line.strip(" :") for line in text.splitlines() if line.strip(" :")]
    return (lines[0] if lines else type(exc).__name__)[:240]


def lake_error(action: str, uri: str, exc: BaseException) -> OSError:
    """`exc` as one line: `lake: cannot ACTION URI: CAUSE (first line) [host H]`; a missing file stays
    FileNotFoundError."""
    java = getattr(exc, "java_exception", None)
    text = f"{type(exc).__name__} {exc} {java.toString() if java is not None else ''}"
    line = first_line(exc)
    if "FileNotFoundException" in text or "File does not exist" in text:
        return FileNotFoundError(f"lake: cannot {action} {uri}: no such file")
    cause = next((name for needles, name in CAUSES if any(n.lower() in text.lower() for n in needles)), None)
    host = re.search(r"host='([^']+)'(?:, port=(\d+))?", text)
    if host:  # a connection failure: the cause and the host say it all, the client's retry text does not
        where = host.group(1) + (f":{host.group(2)}" if host.group(2) else "")
        return LakeError(f"lake: cannot {action} {uri}: {cause or 'unreachable'} [host {where}]")
    return LakeError(f"lake: cannot {action} {uri}: {line if cause is None else f'{cause} ({line})'}")


def is_hidden(name: str) -> bool:
    return name.startswith(("_", "."))


def clean(path: str) -> str:
    """Normalise a lake-relative path and refuse anything that escapes the root."""
    if ".." in path.split("/"):
        raise ValueError(f"not a lake path (.. is not allowed): {path!r}")
    normal = posixpath.normpath("/" + path.strip()).lstrip("/")
    if normal in ("", "."):
        raise ValueError(f"not a lake path: {path!r}")
    return normal


class Lake(ABC):
    """Files under one root URI. Every write is atomic: a reader sees the old file or the whole new one."""

    root_uri: str

    def uri(self, path: str) -> str:
        """The full URI of a lake path, as Spark reads it."""
        return self.root_uri.rstrip("/") + "/" + clean(path)

    @abstractmethod
    def list(self, path: str, recursive: bool = False) -> list[LakeFile]:
        """Visible files under `path`, sorted by path; an absent folder lists as empty."""

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def read_bytes(self, path: str) -> bytes: ...

    @abstractmethod
    def _write_new(self, path: str, data: bytes) -> None:
        """Write a file that does not exist yet, creating its parent folders."""

    @abstractmethod
    def _rename(self, src: str, dst: str) -> None:
        """Rename within the lake; `dst` must not exist; parent folders are created."""

    @abstractmethod
    def delete(self, path: str, recursive: bool = False) -> bool:
        """Delete a file or folder; return whether something was there."""

    @contextmanager
    def _guard(self, action: str, path: str) -> Iterator[None]:
        """Raise a failure of the block as one line (`lake_error`); a missing or existing file and a bad path as
        they are."""
        try:
            yield
        except (FileNotFoundError, FileExistsError, LakeError, ValueError):
            raise
        except Exception as exc:  # noqa: BLE001 - HdfsError, requests and Py4J errors all become one line
            raise lake_error(action, self.uri(path), exc) from None

    def put_bytes(self, path: str, data: bytes) -> None:
        """Write `data` to a hidden temporary sibling, then rename it over `path` in one step."""
        path = clean(path)
        parent, name = posixpath.split(path)
        temporary = posixpath.join(parent, f".{name}.{uuid.uuid4().hex}.tmp")
        with self._guard("write", path):
            self._write_new(temporary, data)
            try:
                self._replace(temporary, path)
            except BaseException:
                self.delete(temporary)
                raise

    @abstractmethod
    def _replace(self, src: str, dst: str) -> None:
        """Rename `src` over `dst` atomically (a reader sees one or the other); parent folders are created."""

    def put_text(self, path: str, text: str) -> None:
        self.put_bytes(path, text.encode("utf-8"))

    def read_text(self, path: str) -> str:
        return self.read_bytes(path).decode("utf-8")

    def move(self, src: str, dst: str) -> None:
        """Move a file or folder; a file already at `dst` with no `src` counts as done (idempotent)."""
        src, dst = clean(src), clean(dst)
        if not self.exists(src):
            if self.exists(dst):
                return
            raise FileNotFoundError(f"lake: cannot move {src}: no such file")
        if self.exists(dst):
            raise FileExistsError(f"lake: cannot move {src} to {dst}: destination exists")
        with self._guard("move", src):
            self._rename(src, dst)


class LocalLake(Lake):
    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.root_uri = root.as_uri()

    def _local(self, path: str) -> Path:
        return self.root / clean(path)

    def list(self, path: str, recursive: bool = False) -> list[LakeFile]:
        base = self._local(path)
        if not base.is_dir():
            return []
        found = []
        for directory, subdirs, files in os.walk(base):
            subdirs[:] = sorted(d for d in subdirs if not is_hidden(d)) if recursive else []
            for name in files:
                if is_hidden(name):
                    continue
                full = Path(directory) / name
                stat = full.stat()
                found.append(LakeFile(full.relative_to(self.root).as_posix(), stat.st_size, stat.st_mtime))
        return sorted(found, key=lambda f: f.path)

    def exists(self, path: str) -> bool:
        return self._local(path).exists()

    def read_bytes(self, path: str) -> bytes:
        return self._local(path).read_bytes()

    def _write_new(self, path: str, data: bytes) -> None:
        target = self._local(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def _rename(self, src: str, dst: str) -> None:
        self._replace(src, dst)

    def _replace(self, src: str, dst: str) -> None:
        target = self._local(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        # A file last written through Spark (Hadoop's local FileSystem) has a `.<name>.crc` checksum beside it;
        # left in place, it would fail the next Spark-side read of the new content.
        target.with_name(f".{target.name}.crc").unlink(missing_ok=True)
        os.replace(self._local(src), target)
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def delete(self, path: str, recursive: bool = False) -> bool:
        target = self._local(path)
        if target.is_dir():
            if not recursive and any(target.iterdir()):
                raise OSError(f"lake: {path} is a non-empty folder")
            shutil.rmtree(target)
            return True
        if target.exists():
            target.unlink()
            return True
        return False


class WebHdfsLake(Lake):
    """HDFS through its REST API. Run it inside the cluster network: the NameNode redirects reads and
    writes to DataNodes by their container host names."""

    def __init__(self, root_uri: str, webhdfs_url: str, user: str, replication: int | None = None):
        from hdfs import InsecureClient

        self.root_uri = root_uri.rstrip("/")
        self.root_path = urlsplit(root_uri).path.rstrip("/") or "/"
        self.client = InsecureClient(webhdfs_url, user=user)
        self.replication = replication

    def _hdfs(self, path: str) -> str:
        return posixpath.join(self.root_path, clean(path))

    def list(self, path: str, recursive: bool = False) -> list[LakeFile]:
        with self._guard("list", path):
            return self._list(path, recursive)

    def _list(self, path: str, recursive: bool) -> list[LakeFile]:
        base = self._hdfs(path)
        status = self.client.status(base, strict=False)
        if status is None or status["type"] != "DIRECTORY":
            return []
        found = []
        pending = [base]
        while pending:
            directory = pending.pop()
            for name, info in self.client.list(directory, status=True):
                if is_hidden(name):
                    continue
                full = posixpath.join(directory, name)
                if info["type"] == "DIRECTORY":
                    if recursive:
                        pending.append(full)
                else:
                    relative = posixpath.relpath(full, self.root_path)
                    found.append(LakeFile(relative, info["length"], info["modificationTime"] / 1000))
        return sorted(found, key=lambda f: f.path)

    def exists(self, path: str) -> bool:
        with self._guard("stat", path):
            return self.client.status(self._hdfs(path), strict=False) is not None

    def read_bytes(self, path: str) -> bytes:
        with self._guard("read", path), self.client.read(self._hdfs(path)) as reader:
            return reader.read()

    def _write_new(self, path: str, data: bytes) -> None:
        self.client.write(self._hdfs(path), data=data, overwrite=False, replication=self.replication)

    def _rename(self, src: str, dst: str) -> None:
        target = self._hdfs(dst)
        self.client.makedirs(posixpath.dirname(target))
        self.client.rename(self._hdfs(src), target)

    def _replace(self, src: str, dst: str) -> None:
        target = self._hdfs(dst)
        self.client.makedirs(posixpath.dirname(target))
        self.client._rename(self._hdfs(src), destination=target, renameoptions="OVERWRITE")  # noqa: SLF001 - no public call

    def delete(self, path: str, recursive: bool = False) -> bool:
        with self._guard("delete", path):
            return self.client.delete(self._hdfs(path), recursive=recursive)


class HadoopFsLake(Lake):
    """The lake through the Spark driver's Hadoop FileSystem (`file://` or `hdfs://`, whatever the root is)."""

    def __init__(self, spark: SparkSession, root_uri: str):
        self.root_uri = root_uri.rstrip("/")
        self.jvm: Any = spark.sparkContext._jvm
        self.spark_gateway: Any = spark.sparkContext._gateway
        configuration = spark.sparkContext._jsc.hadoopConfiguration()
        fs = self.jvm.org.apache.hadoop.fs.Path(self.root_uri).getFileSystem(configuration)
        # file://: the raw local file system, whose rename is one POSIX rename (the checksummed one renames the
        # data and its .crc in two steps, so a reader can see a new file with an old checksum)
        self.local = fs.getUri().getScheme() == "file"
        self.fs = fs.getRaw() if self.local else fs

    def _hpath(self, path: str) -> Any:
        return self.jvm.org.apache.hadoop.fs.Path(self.uri(path))

    def _relative(self, hadoop_path: Any) -> str:
        root = self.fs.makeQualified(self.jvm.org.apache.hadoop.fs.Path(self.root_uri)).toUri().getPath()
        return posixpath.relpath(hadoop_path.toUri().getPath(), root)

    def list(self, path: str, recursive: bool = False) -> list[LakeFile]:
        with self._guard("list", path):
            return self._list(path, recursive)

    def _list(self, path: str, recursive: bool) -> list[LakeFile]:
        base = self._hpath(path)
        if not self.fs.exists(base):
            return []
        found = []
        pending = [base]
        while pending:
            for status in self.fs.listStatus(pending.pop()):
                if is_hidden(status.getPath().getName()):
                    continue
                if status.isDirectory():
                    if recursive:
                        pending.append(status.getPath())
                else:
                    found.append(
                        LakeFile(self._relative(status.getPath()), status.getLen(), status.getModificationTime() / 1000)
                    )
        return sorted(found, key=lambda f: f.path)

    def exists(self, path: str) -> bool:
        with self._guard("stat", path):
            return bool(self.fs.exists(self._hpath(path)))

    def read_bytes(self, path: str) -> bytes:
        with self._guard("read", path):
            stream = self.fs.open(self._hpath(path))
            try:
                return bytes(self.jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
            finally:
                stream.close()

    def _write_new(self, path: str, data: bytes) -> None:
        stream = self.fs.create(self._hpath(path), False)
        try:
            stream.write(bytearray(data))
            stream.hsync()
        finally:
            stream.close()

    def _rename(self, src: str, dst: str) -> None:
        target = self._hpath(dst)
        self.fs.mkdirs(target.getParent())
        if not self.fs.rename(self._hpath(src), target):
            raise OSError(f"lake: rename {src} -> {dst} failed")

    def _replace(self, src: str, dst: str) -> None:
        """FileContext.rename with OVERWRITE: one NameNode operation on HDFS (FileSystem.rename never overwrites
        there); on file:// the raw rename, which replaces the target in one step."""
        target = self._hpath(dst)
        self.fs.mkdirs(target.getParent())
        if self.local:
            if not self.fs.rename(self._hpath(src), target):
                raise OSError(f"lake: rename {src} over {dst} failed")
            return
        hadoop_fs = self.jvm.org.apache.hadoop.fs
        overwrite = self.spark_gateway.new_array(hadoop_fs.Options.Rename, 1)
        overwrite[0] = hadoop_fs.Options.Rename.OVERWRITE
        context = hadoop_fs.FileContext.getFileContext(self.fs.getUri(), self.fs.getConf())
        context.rename(self._hpath(src), target, overwrite)

    def delete(self, path: str, recursive: bool = False) -> bool:
        with self._guard("delete", path):
            return bool(self.fs.delete(self._hpath(path), recursive))


def open_lake(settings: Settings) -> Lake:
    """The lake of these settings, for plain-Python processes (no JVM)."""
    if settings.lake_scheme == "file":
        return LocalLake(Path(urlsplit(settings.lake_root).path))
    return WebHdfsLake(settings.lake_root, settings.webhdfs_url, settings.webhdfs_user,
                       int(settings.lake_replication) if settings.lake_replication else None)


def spark_lake(spark: SparkSession, settings: Settings) -> Lake:
    """The lake of these settings as the Spark driver sees it, through Hadoop's FileSystem API."""
    return HadoopFsLake(spark, settings.lake_root)

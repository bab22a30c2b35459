"""The lake interface behaves the same on every backend: local files, WebHDFS, Hadoop's FileSystem (Spark)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import EXTERNAL_LAKE_ROOT, EXTERNAL_WEBHDFS
from webhdfs_server import serve

from cronlake.core.lake import HadoopFsLake, Lake, LakeError, LocalLake, WebHdfsLake


@pytest.fixture(params=["local", "webhdfs", "hadoopfs", "external-webhdfs", "external-hadoopfs"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lake]:
    """Each backend on a fresh root; the external ones on a real HDFS (CRONLAKE_TEST_WEBHDFS_URL and
    CRONLAKE_TEST_LAKE_ROOT, see docs/cluster.md), under a folder of their own deleted afterwards."""
    root = tmp_path / "lake"
    root.mkdir()
    if request.param.startswith("external"):
        if not (EXTERNAL_WEBHDFS and EXTERNAL_LAKE_ROOT):
            pytest.skip("no external HDFS: set CRONLAKE_TEST_WEBHDFS_URL and CRONLAKE_TEST_LAKE_ROOT")
        external_root = f"{EXTERNAL_LAKE_ROOT.rstrip('/')}/t{uuid.uuid4().hex[:8]}"
        user = os.environ.get("CRONLAKE_TEST_WEBHDFS_USER", "cronlake")
        cleanup = WebHdfsLake(external_root, EXTERNAL_WEBHDFS, user)
        if request.param == "external-webhdfs":
            yield cleanup
        else:
            yield HadoopFsLake(request.getfixturevalue("spark"), external_root)
        cleanup.client.delete(cleanup.root_path, recursive=True)
    elif request.param == "local":
        yield LocalLake(root)
    elif request.param == "webhdfs":
        server, _ = serve(tmp_path)
        host, port = server.server_address[:2]
        backend = WebHdfsLake("hdfs://namenode:8020/lake", f"http://{host}:{port}", "cronlake")
        yield backend
        server.shutdown()
    else:
        spark = request.getfixturevalue("spark")
        yield HadoopFsLake(spark, root.as_uri())


def test_put_read_list_move_delete(lake: Lake) -> None:
    lake.put_text("landing/velib/b.csv", "b\n")
    lake.put_text("landing/velib/a.csv", "a\n")
    lake.put_text("landing/velib/sub/c.csv", "c\n")
    lake.put_text("landing/velib/_hidden", "x")
    assert [f.path for f in lake.list("landing/velib")] == ["landing/velib/a.csv", "landing/velib/b.csv"]
    assert [f.path for f in lake.list("landing/velib", recursive=True)] == [
        "landing/velib/a.csv", "landing/velib/b.csv", "landing/velib/sub/c.csv"]
    assert lake.list("landing/velib")[0].size == 2
    assert lake.list("landing/nothing-here") == []

    lake.put_text("landing/velib/a.csv", "a2\n")
    assert lake.read_text("landing/velib/a.csv") == "a2\n"

    lake.move("landing/velib/a.csv", "archive/velib/a.csv")
    assert not lake.exists("landing/velib/a.csv")
    assert lake.read_text("archive/velib/a.csv") == "a2\n"
    lake.move("landing/velib/a.csv", "archive/velib/a.csv")  # done already: idempotent
    lake.put_text("landing/velib/b2.csv", "b\n")
    with pytest.raises(FileExistsError):
        lake.move("landing/velib/b2.csv", "archive/velib/a.csv")
    with pytest.raises(FileNotFoundError):
        lake.move("landing/velib/zzz.csv", "archive/velib/zzz.csv")

    assert lake.delete("landing/velib/sub", recursive=True)
    assert not lake.exists("landing/velib/sub/c.csv")
    assert not lake.delete("landing/velib/sub")


def test_atomic_put_leaves_no_temporary_file(lake: Lake) -> None:
    lake.put_bytes("checkpoints/job/runs/r1.json", b"{}")
    lake.put_bytes("checkpoints/job/runs/r1.json", b'{"state": "committed"}')
    names = [f.path for f in lake.list("checkpoints/job/runs")]
    assert names == ["checkpoints/job/runs/r1.json"]
    assert lake.read_bytes("checkpoints/job/runs/r1.json") == b'{"state": "committed"}'


def test_paths_cannot_escape_the_root(lake: Lake) -> None:
    with pytest.raises(ValueError):
        lake.put_text("../outside.txt", "x")
    assert lake.uri("landing/velib/a.csv").endswith("/landing/velib/a.csv")


def test_webhdfs_reads_and_writes_follow_the_datanode_redirect(tmp_path: Path) -> None:
    server, seen = serve(tmp_path)
    host, port = server.server_address[:2]
    try:
        lake = WebHdfsLake("hdfs://namenode:8020/lake", f"http://{host}:{port}", "cronlake")
        lake.put_text("landing/x/a.csv", "hello")
        assert lake.read_text("landing/x/a.csv") == "hello"
    finally:
        server.shutdown()
    assert (tmp_path / "lake" / "landing" / "x" / "a.csv").read_text() == "hello"
    namenode_creates = [r for r in seen if r.startswith("PUT CREATE /lake/landing/x/.a.csv")]
    assert len(namenode_creates) == 2, "CREATE is sent to the NameNode, then to the DataNode it redirects to"
    assert any(r.startswith("PUT RENAME /lake/landing/x/.a.csv") for r in seen), "written to a temporary name first"
    assert sum(r.startswith("GET OPEN /lake/landing/x/a.csv") for r in seen) == 2


def test_readers_always_see_a_whole_file_while_it_is_overwritten(lake: Lake) -> None:
    lake.put_text("checkpoints/job/runs/manifest.json", "v0")
    stop, seen, missing = threading.Event(), set(), []

    def read_forever() -> None:
        while not stop.is_set():
            try:
                seen.add(lake.read_text("checkpoints/job/runs/manifest.json"))
            except FileNotFoundError:
                missing.append(1)

    readers = [threading.Thread(target=read_forever) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for version in range(1, 41):
            lake.put_text("checkpoints/job/runs/manifest.json", f"v{version}")
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert missing == [], f"readers found no manifest {len(missing)} times"
    assert seen <= {f"v{n}" for n in range(41)} and len(seen) > 1
    assert lake.read_text("checkpoints/job/runs/manifest.json") == "v40"


def test_a_writer_killed_before_its_rename_leaves_the_old_file(lake: Lake) -> None:
    lake.put_text("checkpoints/job/runs/manifest.json", "committed")
    lake._write_new("checkpoints/job/runs/.manifest.json.1234.tmp", b"half")  # step one, then the process dies
    assert lake.read_text("checkpoints/job/runs/manifest.json") == "committed"
    assert [f.path for f in lake.list("checkpoints/job/runs")] == ["checkpoints/job/runs/manifest.json"]


@pytest.fixture
def webhdfs(tmp_path: Path) -> Iterator[tuple[object, str]]:
    server, _ = serve(tmp_path)
    host, port = server.server_address[:2]
    yield server.RequestHandlerClass, f"http://{host}:{port}"
    server.shutdown()


def test_webhdfs_writes_with_the_configured_replication(webhdfs: tuple[object, str]) -> None:
    _, url = webhdfs
    WebHdfsLake("hdfs://namenode:8020/lake", url, "cronlake", replication=1).put_text("landing/x/a.csv", "a")
    WebHdfsLake("hdfs://namenode:8020/lake", url, "cronlake").put_text("landing/x/b.csv", "b")
    from hdfs import InsecureClient

    client = InsecureClient(url, user="cronlake")
    assert client.status("/lake/landing/x/a.csv")["replication"] == 1
    assert client.status("/lake/landing/x/b.csv")["replication"] == 3, "unset: the file system's default"


@pytest.mark.parametrize(("fault", "cause"), [("safe_mode", "the NameNode is in safe mode"),
                                              ("denied", "permission denied")])
def test_webhdfs_refusals_are_one_line_naming_the_cause(webhdfs: tuple[object, str], fault: str, cause: str) -> None:
    handler, url = webhdfs
    setattr(handler, fault, True)
    with pytest.raises(LakeError) as raised:
        WebHdfsLake("hdfs://namenode:8020/lake", url, "cronlake").put_text("quarantine/velib_api/r.jsonl", "{}")
    message = str(raised.value)
    assert "\n" not in message and message.startswith(
        f"lake: cannot write hdfs://namenode:8020/lake/quarantine/velib_api/r.jsonl: {cause} (")


def test_webhdfs_unreachable_hosts_are_named(webhdfs: tuple[object, str]) -> None:
    handler, url = webhdfs
    with pytest.raises(LakeError, match=r"connection refused .*\[host 127\.0\.0\.1:1\]$"):
        WebHdfsLake("hdfs://namenode:8020/lake", "http://127.0.0.1:1", "cronlake").list("landing")
    handler.datanode_host = "datanode-7.invalid"
    with pytest.raises(LakeError, match=r"host name does not resolve .*\[host datanode-7\.invalid:\d+\]$"):
        WebHdfsLake("hdfs://namenode:8020/lake", url, "cronlake").put_text("landing/x/a.csv", "a")

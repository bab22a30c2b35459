"""A small WebHDFS REST server over a local folder, for testing the WebHDFS lake backend without a cluster.

It speaks the parts of the protocol the backend uses, the way a NameNode does: CREATE and OPEN answer
307 with a Location on a "DataNode" address (here the same server, path prefixed by /datanode), which the
client must follow; GETFILESTATUS, LISTSTATUS, MKDIRS, RENAME, DELETE answer JSON as documented in
https://hadoop.apache.org/docs/stable/hadoop-project-dist/hadoop-hdfs/WebHDFS.html. It is not HDFS.
RENAME with `renameoptions=OVERWRITE` replaces a file in one step and answers 200 with an empty body, as the
NameNode's rename2 does; CREATE keeps its `replication` (default 3, dfs.replication's) for GETFILESTATUS.
Faults a cluster brings, set on `server.RequestHandlerClass`: `safe_mode = True` refuses every write as a NameNode
in safe mode does (403 SafeModeException), `denied = True` refuses them as permissions do (403
AccessControlException), `datanode_host = "name"` redirects to a DataNode by that host name.
"""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


def file_status(path: Path, name: str, replication: int = 3) -> dict:
    stat = path.stat()
    return {"pathSuffix": name, "type": "DIRECTORY" if path.is_dir() else "FILE",
            "length": 0 if path.is_dir() else stat.st_size, "modificationTime": int(stat.st_mtime * 1000),
            "owner": "cronlake", "group": "supergroup", "permission": "755",
            "replication": 0 if path.is_dir() else replication,
            "blockSize": 134217728, "accessTime": 0}


class WebHdfsHandler(BaseHTTPRequestHandler):
    root: Path
    requests_seen: list[str]
    replication: dict[Path, int]
    safe_mode = False
    denied = False
    datanode_host: str | None = None

    def log_message(self, *args: object) -> None:
        pass

    def _local(self, hdfs_path: str) -> Path:
        return self.root / hdfs_path.lstrip("/")

    def _json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _not_found(self, path: str) -> None:
        self._json(404, {"RemoteException": {"exception": "FileNotFoundException",
                                             "javaClassName": "java.io.FileNotFoundException",
                                             "message": f"File does not exist: {path}"}})

    def _parse(self) -> tuple[bool, str, dict[str, str]]:
        parts = urlsplit(self.path)
        query = {k.lower(): v[0] for k, v in parse_qs(parts.query).items()}
        datanode = parts.path.startswith("/datanode")
        path = parts.path.removeprefix("/datanode").removeprefix("/webhdfs/v1") or "/"
        self.requests_seen.append(f"{self.command} {query.get('op', '').upper()} {path}")
        return datanode, path, query

    def _refused(self, path: str) -> bool:
        """Answer a write the way a NameNode in safe mode or without permission does; whether it was refused."""
        if self.safe_mode:
            self._json(403, {"RemoteException": {
                "exception": "SafeModeException",
                "javaClassName": "org.apache.hadoop.hdfs.server.namenode.SafeModeException",
                "message": f"Cannot create file{path}. Name node is in safe mode.\nThe reported blocks 0 needs "
                           "additional 1 blocks to reach the threshold 0.9990 of total blocks 1.\nSafe mode will be "
                           "turned off automatically once the thresholds have been reached."}})
            return True
        if self.denied:
            self._json(403, {"RemoteException": {
                "exception": "AccessControlException",
                "javaClassName": "org.apache.hadoop.security.AccessControlException",
                "message": f"Permission denied: user=cronlake, access=WRITE, "
                           f"inode=\"{path}\":hdfs:supergroup:drwxr-xr-x"}})
            return True
        return False

    def _redirect(self, path: str) -> None:
        host, port = self.server.server_address[:2]
        host = self.datanode_host or host
        self.send_response(307)
        self.send_header("Location", f"http://{host}:{port}/datanode/webhdfs/v1{path}?{urlsplit(self.path).query}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        datanode, path, query = self._parse()
        op, local = query.get("op", "").upper(), self._local(path)
        if not local.exists():
            return self._not_found(path)
        if op == "GETFILESTATUS":
            return self._json(200, {"FileStatus": file_status(local, "", self.replication.get(local, 3))})
        if op == "LISTSTATUS":
            children = sorted(local.iterdir()) if local.is_dir() else [local]
            statuses = [file_status(c, c.name, self.replication.get(c, 3)) for c in children]
            return self._json(200, {"FileStatuses": {"FileStatus": statuses}})
        if op == "OPEN" and not datanode:
            return self._redirect(path)
        if op == "OPEN":
            data = local.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        return self._json(400, {"RemoteException": {"exception": "IllegalArgumentException", "message": op}})

    def do_PUT(self) -> None:
        datanode, path, query = self._parse()
        op, local = query.get("op", "").upper(), self._local(path)
        if not datanode and self._refused(path):
            return None
        if op == "CREATE" and not datanode:
            return self._redirect(path)
        if op == "CREATE":
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length)
            if local.exists() and query.get("overwrite", "false").lower() != "true":
                return self._json(403, {"RemoteException": {"exception": "FileAlreadyExistsException",
                                                            "message": f"{path} already exists"}})
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(data)
            self.replication[local] = int(query.get("replication") or 3)
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if op == "MKDIRS":
            local.mkdir(parents=True, exist_ok=True)
            return self._json(200, {"boolean": True})
        if op == "RENAME" and query.get("renameoptions", "").upper() == "OVERWRITE":
            return self._rename_overwrite(path, local, self._local(query["destination"]))
        if op == "RENAME":
            target = self._local(query["destination"])
            if not local.exists() or target.exists() or not target.parent.is_dir():
                return self._json(200, {"boolean": False})
            local.rename(target)
            return self._json(200, {"boolean": True})
        return self._json(400, {"RemoteException": {"exception": "IllegalArgumentException", "message": op}})

    def _rename_overwrite(self, path: str, local: Path, target: Path) -> None:
        if not local.exists():
            return self._not_found(path)
        if not target.parent.is_dir():
            return self._json(404, {"RemoteException": {"exception": "FileNotFoundException",
                                                        "message": f"rename destination parent {target.parent} "
                                                                   "not found."}})
        if target.is_dir():
            return self._json(409, {"RemoteException": {"exception": "FileAlreadyExistsException",
                                                        "message": f"rename destination {target} is a directory"}})
        self.replication[target] = self.replication.pop(local, 3)
        local.replace(target)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", "0")
        self.end_headers()
        return None

    def do_DELETE(self) -> None:
        _, path, query = self._parse()
        local = self._local(path)
        if self._refused(path):
            return None
        if not local.exists():
            return self._json(200, {"boolean": False})
        if local.is_dir():
            if any(local.iterdir()) and query.get("recursive", "false").lower() != "true":
                return self._json(403, {"RemoteException": {"exception": "PathIsNotEmptyDirectoryException",
                                                            "message": f"{path} is non empty"}})
            shutil.rmtree(local)
        else:
            local.unlink()
        return self._json(200, {"boolean": True})


def serve(root: Path) -> tuple[ThreadingHTTPServer, list[str]]:
    """Start a server on a free 127.0.0.1 port; returns it and the list of requests it receives."""
    seen: list[str] = []
    handler = type("Handler", (WebHdfsHandler,), {"root": root, "requests_seen": seen, "replication": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen

"""The lake API as a client sees it: a real `python -m api.serve` (two uvicorn workers) on 127.0.0.1, over
the governance test's versioned datasets, holding the real rows of the retail CSV slices.

A version is published the way the claim protocol's last step does it (`versioned.commit` of Parquet part files,
then `catalog.record_version`), from rows typed in plain Python: no Spark, so the suite stays fast (the protocol
path itself is tests/test_governance.py's). Expected rows and counts come from the CSV files (the `csv` module)
or the catalog, never from the API itself.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, REPO, run_cli
from test_governance import INVOICES, LINES

from cronlake.core import catalog, versioned
from cronlake.core import settings as settings_module
from cronlake.core.contracts import Dataset
from cronlake.core.lake import open_lake
from cronlake.core.mongo import ops_db
from cronlake.ops.embedded import free_port

WAIT_S = 30


class Answer:
    def __init__(self, status: int, headers: Any, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


def call(url: str, key: str | None = None) -> Answer:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return Answer(answer.status, answer.headers, answer.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.headers, error.read())


def wait_healthy(url: str, alive: Any, log: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            if call(url + "/health").status == 200:
                return
        except OSError:
            pass
        if not alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the API did not start; log:\n{log.read_text()[-3000:] if log.exists() else ''}")
        time.sleep(0.2)


@contextmanager
def served(env: dict[str, str], log: Path, workers: int = 2) -> Iterator[str]:
    """`python -m api.serve` as in production; yields its base URL."""
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "api.serve", "--port", str(port), "--workers", str(workers)],
                                   cwd=REPO, env={**os.environ, **env, "PYTHONPATH": str(REPO)}, stdout=out,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, lambda: process.poll() is None, log)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


SPARK_TYPE_NAMES = {"string": "string", "int": "int", "long": "bigint", "double": "double", "timestamp": "timestamp"}


def csv_records(name: str) -> list[dict[str, Any]]:
    """The slice's rows typed as gov_lines holds them (the governance job's parsing, in plain Python)."""
    with open(FIXTURES / "retail" / name, newline="") as handle:
        rows = list(csv.DictReader(handle))
    records = []
    for row in rows:
        moment = datetime.strptime(row["InvoiceDate"], "%m/%d/%y %H:%M").replace(tzinfo=UTC)
        records.append({"invoice_no": row["InvoiceNo"], "stock_code": row["StockCode"],
                        "quantity": int(row["Quantity"]), "unit_price": float(row["UnitPrice"]),
                        "invoice_time": moment, "country": row["Country"], "invoice_day": moment.strftime("%Y-%m-%d")})
    return records


def publish(env: dict[str, str], dataset: Dataset, records: list[dict[str, Any]], upstream: tuple = ()) -> int:
    """One new version of `dataset` holding `records` (Parquet parts per partition, one Delta commit, its
    catalog document)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    local = settings_module.load(dict(env))
    lake = open_lake(local)
    run_id = f"api_test-{uuid.uuid4().hex[:8]}"
    schema = versioned.arrow_schema(dataset)
    root = Path(env["CRONLAKE_LAKE_ROOT"].removeprefix("file://")) / dataset.path
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        folder = "/".join(f"{c}={record[c]}" for c in dataset.partition_by)
        groups.setdefault(folder, []).append(record)
    files = []
    for folder, rows in groups.items():
        relative = f"{folder}/part-{run_id}.parquet".lstrip("/")
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), root / relative)
        files.append({"path": relative, "bytes": (root / relative).stat().st_size, "rows": len(rows)})
    number = versioned.commit(lake, dataset, run_id, "api_test", files, versioned.arrow_schema_json(schema))
    catalog.record_version(
        local, dataset, run_id=run_id, job="api_test", rows=len(records), location=versioned.table_uri(lake, dataset),
        format="delta", schema=[{"name": c.name, "type": SPARK_TYPE_NAMES[c.kind]} for c in dataset.columns],
        upstream=[{"dataset": d.name, "version": versioned.current_version(lake, d)} for d in upstream],
        version=number, total_rows=versioned.row_count(versioned.open_table(lake, dataset, version=number)))
    return number


def publish_slice(env: dict[str, str], name: str) -> None:
    lines = csv_records(name)
    publish(env, LINES, lines)
    counts = Counter(r["invoice_no"] for r in lines)
    publish(env, INVOICES, [{"invoice_no": n, "lines": c} for n, c in counts.items()], upstream=(LINES,))


def csv_lines(*names: str) -> Counter:
    """The invoice lines of the CSV slices as (invoice, stock code, quantity, price, country) rows."""
    found: Counter = Counter()
    for name in names:
        with open(FIXTURES / "retail" / name, newline="") as handle:
            for row in csv.DictReader(handle):
                found[(row["InvoiceNo"], row["StockCode"], int(row["Quantity"]), float(row["UnitPrice"]),
                       row["Country"])] += 1
    return found


def as_lines(rows: list[dict[str, Any]]) -> Counter:
    return Counter((r["invoice_no"], r["stock_code"], r["quantity"], r["unit_price"], r["country"]) for r in rows)


def new_key(env: dict[str, str], *scopes: str, rate: int | None = None) -> str:
    args = [sys.executable, "-m", "api.keys", "create", "--name", f"test-{uuid.uuid4().hex[:4]}"]
    args += [part for scope in scopes for part in ("--scope", scope)]
    args += ["--rate", str(rate)] if rate else []
    done = run_cli(args, {**env, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def follow(url: str, key: str, between_pages: Any = None, after_page: int = 1
           ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every page from `url` by its `Link: rel="next"`: (all rows, page bodies); `between_pages()` runs once,
    after page number `after_page`."""
    rows, bodies = [], []
    while url:
        answer = call(url, key)
        assert answer.status == 200, answer.body
        body = answer.json()
        rows += body["rows"]
        bodies.append(body)
        link = answer.headers.get("Link")
        assert (link is None) == (body["next_page_token"] is None)
        url = link.split(";")[0].strip("<> ") if link else ""
        if between_pages is not None and len(bodies) == after_page:
            between_pages()
    return rows, bodies


@pytest.fixture(scope="module")
def lake_api(stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Its own lake and databases; version 0 of gov_lines and gov_invoices from retail_part1.csv; the API
    served over them."""
    tag = uuid.uuid4().hex[:8]
    state = tmp_path_factory.mktemp("api")
    env = {**stack, "CRONLAKE_STATE_DIR": str(state / "state"), "CRONLAKE_LAKE_ROOT": (state / "lake").as_uri(),
           "CRONLAKE_MONGO_DB": f"api_{tag}", "CRONLAKE_MONGO_OPS_DB": f"api_{tag}_ops",
           "CRONLAKE_VELIB_TOPIC": f"velib.api{tag}", "CRONLAKE_API_MAX_PAGE_SIZE": "500"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        publish_slice(env, "retail_part1.csv")
        with served(env, state / "api.log") as url:
            yield {"url": url, "env": env, "settings": settings_module.load(dict(env))}


def test_auth_matrix_scopes_and_audit(lake_api: dict[str, Any]) -> None:
    url, env, local = lake_api["url"], lake_api["env"], lake_api["settings"]
    invoices_only = new_key(env, INVOICES.name)
    rows_url = f"{url}/datasets/{LINES.name}/rows"

    missing = call(rows_url)
    assert missing.status == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    key_id, _, secret = invoices_only.partition(".")
    for wrong in ("not-a-key", f"{key_id}.{secret[:-1]}x", f"unknown.{secret}"):
        answer = call(rows_url, wrong)
        assert answer.status == 401 and "WWW-Authenticate" in answer.headers, wrong

    forbidden = call(rows_url, invoices_only)
    assert forbidden.status == 403 and forbidden.json() == {"detail": "forbidden"}
    for path in (f"/catalog/datasets/{LINES.name}", f"/catalog/datasets/{LINES.name}/versions",
                 f"/catalog/datasets/{LINES.name}/versions/0"):
        answer = call(url + path, invoices_only)
        assert answer.status == 403 and answer.json() == {"detail": "forbidden"}, path
    allowed = call(f"{url}/datasets/{INVOICES.name}/rows?page_size=500", invoices_only)
    invoice_numbers = {line[0] for line in csv_lines("retail_part1.csv")}
    assert allowed.status == 200 and {r["invoice_no"] for r in allowed.json()["rows"]} == invoice_numbers
    assert [d["_id"] for d in call(f"{url}/catalog/datasets", invoices_only).json()] == [INVOICES.name]
    assert [d["_id"] for d in call(f"{url}/catalog/search?tag=sales", invoices_only).json()] == [INVOICES.name]

    listed = run_cli([sys.executable, "-m", "api.keys", "list"], {**env, "PYTHONPATH": str(REPO)})
    assert key_id in listed.stdout and secret not in listed.stdout and "active" in listed.stdout
    stored = ops_db(local)["api_keys"].find_one({"_id": key_id})
    assert secret not in json.dumps(stored, default=str), "only the hash is stored"
    revoked = run_cli([sys.executable, "-m", "api.keys", "revoke", key_id], {**env, "PYTHONPATH": str(REPO)})
    assert revoked.returncode == 0, revoked.stderr
    assert call(f"{url}/datasets/{INVOICES.name}/rows", invoices_only).status == 401

    from api import access

    expired, _ = access.create_key(local, "expired", ["*"], expires_in=timedelta(seconds=-1))
    assert call(rows_url, expired).status == 401

    audit = list(ops_db(local)["api_audit"].find({"key_id": key_id}))
    statuses = Counter((a["endpoint"], a["dataset"], a["status"]) for a in audit)
    assert statuses[("/datasets/{name}/rows", LINES.name, 403)] == 1
    assert statuses[("/datasets/{name}/rows", INVOICES.name, 200)] == 1
    assert statuses[("/datasets/{name}/rows", INVOICES.name, 401)] == 0, "a revoked key has no key id"
    served_rows = [a["rows"] for a in audit if a["status"] == 200 and a["endpoint"] == "/datasets/{name}/rows"]
    assert served_rows == [len(invoice_numbers)]
    anonymous = [a for a in ops_db(local)["api_audit"].find({"status": 401}) if a["key_id"] is None]
    assert len(anonymous) >= 5 and all(a["dataset"] is None and a["rows"] == 0 for a in anonymous)


def test_rate_limit_answers_429_with_retry_after(lake_api: dict[str, Any]) -> None:
    url, env = lake_api["url"], lake_api["env"]
    key = new_key(env, "*", rate=2)  # two requests a minute, per worker process (two workers)
    answers = [call(f"{url}/catalog/datasets", key) for _ in range(8)]
    statuses = Counter(a.status for a in answers)
    assert statuses[200] <= 4 and statuses[429] >= 4
    limited = next(a for a in answers if a.status == 429)
    assert 1 <= int(limited.headers["Retry-After"]) <= 30


def test_pages_stay_on_their_version_while_a_new_one_lands(lake_api: dict[str, Any]) -> None:
    url, env = lake_api["url"], lake_api["env"]
    key = new_key(env, "*")

    def publish_part2() -> None:
        publish_slice(env, "retail_part2.csv")

    # the new version lands when the cursor sits inside part2's key range: new rows go before and after it
    old_keys = sorted((line[0], line[1]) for line in csv_lines("retail_part1.csv").elements())
    new_keys = sorted((line[0], line[1]) for line in csv_lines("retail_part2.csv"))
    size = 7  # small pages: a page ends among the few credit notes (C…), which sort after part2's first keys
    landing_page = next(page for page in range(1, math.ceil(len(old_keys) / size))
                        if new_keys[0] < old_keys[page * size - 1] < new_keys[-1])
    pinned = call(f"{url}/datasets/{LINES.name}/rows?page_size={size}", key).json()["version"]
    rows, bodies = follow(f"{url}/datasets/{LINES.name}/rows?page_size={size}", key, between_pages=publish_part2,
                          after_page=landing_page)
    assert {b["version"] for b in bodies} == {pinned}
    assert len(bodies) == math.ceil(len(old_keys) / size)
    assert as_lines(rows) == csv_lines("retail_part1.csv"), "every row of the pinned version once"
    keys = [(r["invoice_no"], r["stock_code"]) for r in rows]
    assert keys == sorted(keys), "stable key order across pages"

    newest = call(f"{url}/datasets/{LINES.name}/rows?page_size=500", key).json()
    assert newest["version"] == pinned + 1
    everything, _ = follow(f"{url}/datasets/{LINES.name}/rows?page_size=500", key)
    assert as_lines(everything) == csv_lines("retail_part1.csv", "retail_part2.csv")

    versions = call(f"{url}/catalog/datasets/{LINES.name}/versions", key).json()
    assert [v["version"] for v in versions] == [pinned + 1, pinned]
    for version in versions:  # a version's rows, read by number and by time, are what the catalog counted
        by_number, _ = follow(f"{url}/datasets/{LINES.name}/rows?page_size=500&version={version['version']}", key)
        moment = urllib.parse.quote(version["created_at"])
        by_time, _ = follow(f"{url}/datasets/{LINES.name}/rows?page_size=500&as_of={moment}", key)
        assert len(by_number) == len(by_time) == version["total_rows"]

    detail = call(f"{url}/catalog/datasets/{LINES.name}/versions/{pinned + 1}", key).json()
    assert detail["rows"] == sum(csv_lines("retail_part2.csv").values())
    assert {"name": "invoice_time", "type": "timestamp"} in detail["schema"]
    assert detail["lineage"]["run_id"] == detail["run_id"] and "quality" in detail
    invoices = call(f"{url}/catalog/datasets/{INVOICES.name}/versions/{pinned + 1}", key).json()
    assert invoices["lineage"]["upstream"][0]["dataset"] == LINES.name
    assert call(f"{url}/catalog/datasets/{LINES.name}/versions/99", key).status == 404
    assert call(f"{url}/datasets/{LINES.name}/rows?version=99", key).status == 404
    found = call(f"{url}/catalog/search?q=invoice&column=stock_code", key).json()
    assert [d["_id"] for d in found] == [LINES.name]


def test_tampered_tokens_are_400_and_big_pages_422(lake_api: dict[str, Any]) -> None:
    url, env = lake_api["url"], lake_api["env"]
    key = new_key(env, "*")
    token = call(f"{url}/datasets/{LINES.name}/rows?page_size=10", key).json()["next_page_token"]
    body, _, mac = token.partition(".")
    import base64

    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["v"] = 0 if payload["v"] else 1
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=") + "." + mac
    for bad in (forged, token[:-2] + ("AA" if not token.endswith("AA") else "BB"), "garbage", token + "."):
        answer = call(f"{url}/datasets/{LINES.name}/rows?page_token={urllib.parse.quote(bad)}", key)
        assert answer.status == 400, bad
    other = call(f"{url}/datasets/{INVOICES.name}/rows?page_token={urllib.parse.quote(token)}", key)
    assert other.status == 400, "a token is for its own dataset"
    assert call(f"{url}/datasets/{LINES.name}/rows?page_size=501", key).status == 422
    assert call(f"{url}/datasets/{LINES.name}/rows?page_size=0", key).status == 422
    assert call(f"{url}/datasets/no_such_dataset/rows", key).json() == {"detail": "dataset not available"}


def test_resource_routes_filter_by_time_and_keys(lake_api: dict[str, Any], monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    """A route-table entry (as the lead adds one per e-commerce dataset), on a server in this process."""
    import uvicorn

    from api import resources
    from api.app import create_app

    monkeypatch.setattr(resources, "RESOURCES", (
        resources.Resource("invoice-lines", LINES.name, "invoice_time", ("country", "stock_code")),
        resources.Resource("orders", "not_declared_yet", "order_time", ("customer_id",))))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(lake_api["settings"]), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, thread.is_alive, Path("/dev/null"))
        key = new_key(lake_api["env"], "*")
        assert call(f"{url}/orders", key).json() == {"detail": "dataset not available"}
        rows, _ = follow(f"{url}/invoice-lines?country=France&page_size=5&version=0", key)
        expected = Counter({line: n for line, n in csv_lines("retail_part1.csv").items() if line[4] == "France"})
        assert as_lines(rows) == expected and expected
        since, until = "2010-12-01T09:00:00Z", "2010-12-01T10:00:00Z"
        rows, _ = follow(f"{url}/invoice-lines?since={since}&until={until}&version=0", key)
        with open(FIXTURES / "retail" / "retail_part1.csv", newline="") as handle:
            hours = [r for r in csv.DictReader(handle) if r["InvoiceDate"].startswith("12/1/10 9:")]
        assert len(rows) == len(hours) and hours
        assert call(f"{url}/invoice-lines?country=France&page_token=x", key).status == 400
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_openapi_is_fuzzed_without_a_server_error(lake_api: dict[str, Any], tmp_path: Path) -> None:
    url, env = lake_api["url"], lake_api["env"]
    schema = call(f"{url}/openapi.json").json()
    assert schema["openapi"].startswith("3.1") and "HTTPBearer" in schema["components"]["securitySchemes"]
    key = new_key(env, "*", rate=100_000)
    done = subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "run", f"{url}/openapi.json",
         "--header", f"Authorization: Bearer {key}", "--checks", "not_a_server_error", "--max-examples", "25",
         "--phases", "examples,coverage,fuzzing", "--max-time", "45", "--request-timeout", "20", "--workers", "1",
         "--no-color"],
        env={**os.environ, **env}, cwd=tmp_path, capture_output=True, text=True, timeout=240)  # its cache there
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    audited = Counter(a["status"] for a in ops_db(lake_api["settings"])["api_audit"].find(
        {"key_id": key.partition(".")[0]}))
    assert audited[200] > 0 and audited[200] + audited[400] + audited[404] + audited[422] == sum(audited.values()), \
        "the fuzzer got past the key check, and every answer was a success or a client error"


def test_rate_limiter_memory_is_bounded() -> None:
    from api.access import RateLimiter

    now = [0.0]
    limiter = RateLimiter(max_keys=3, clock=lambda: now[0])
    assert [limiter.retry_after("a", 2) for _ in range(3)] == [0, 0, 30.0]  # 2 a minute: the third waits 30 s
    for name in "bcdef":
        limiter.retry_after(name, 2)
    assert len(limiter) == 3
    assert limiter.retry_after("a", 2) == 0, "the least recently seen key was forgotten (a full bucket again)"
    assert limiter.retry_after("f", 2) == 0 and limiter.retry_after("f", 2) == 30.0
    now[0] = 30.0
    assert limiter.retry_after("f", 2) == 0, "one request's worth refilled in 30 s"


def test_docs_page_works_offline_in_a_browser(lake_api: dict[str, Any]) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    url = lake_api["url"]
    html = call(f"{url}/docs").body.decode()
    assert "<script src" not in html and "https://" not in html, "nothing loaded from elsewhere"
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--no-first-run", "--proxy-server=127.0.0.1:9",
                     "--proxy-bypass-list=127.0.0.1"):  # any request off this host would fail
        options.add_argument(argument)
    profile = tempfile.mkdtemp(prefix="chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        driver.get(f"{url}/docs")
        WebDriverWait(driver, WAIT_S).until(EC.presence_of_element_located((By.CSS_SELECTOR, "details.op")))
        operations = driver.find_elements(By.CSS_SELECTOR, "details.op summary")
        assert any("/datasets/{name}/rows" in o.text for o in operations)
        key = new_key(lake_api["env"], LINES.name)
        driver.find_element(By.ID, "api-key").send_keys(key)
        box = next(b for b in driver.find_elements(By.CSS_SELECTOR, "details.op")
                   if "/datasets/{name}/rows" in b.text)
        box.find_element(By.TAG_NAME, "summary").click()
        box.find_element(By.CSS_SELECTOR, "input[name='name']").send_keys(LINES.name)
        box.find_element(By.CSS_SELECTOR, "input[name='page_size']").send_keys("3")
        box.find_element(By.CSS_SELECTOR, "button").click()
        WebDriverWait(driver, WAIT_S).until(lambda d: box.find_element(By.CSS_SELECTOR, "pre").text)
        shown = box.find_element(By.CSS_SELECTOR, "pre").text
        assert shown.startswith("200") and f'"dataset": "{LINES.name}"' in shown
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)

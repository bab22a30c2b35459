"""The FastAPI application: data routes over versioned datasets, catalog routes, keys, audit, docs.

`create_app(settings)` builds it; `api.serve` runs it under uvicorn workers. Every route but `/health`,
`/openapi.json` and `/docs` needs `Authorization: Bearer <key>`; a dataset outside the key's scopes is a 403
with no data.
"""


import inspect
import math
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi import Query as QueryParam
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api import access, docs_page, paging, resources
from api.access import ApiKey
from api.resources import Resource
from cronlake.core import catalog
from cronlake.core.contracts import Dataset
from cronlake.core.lake import Lake, open_lake
from cronlake.core.settings import SettingError, Settings

DEFAULT_PAGE_SIZE = 100
NOT_AUTHENTICATED = {"WWW-Authenticate": 'Bearer realm="cronlake"'}


def check_positive(name: str, value: str) -> None:
    if not value.isdigit() or int(value) < 1:
        raise SettingError(f"{name}: must be a positive integer, got {value!r}")


def server_secret(settings: Settings) -> bytes:
    """`CRONLAKE_API_SECRET`, else a random one kept in the state dir (created once, shared by every worker)."""
    configured = settings.get("CRONLAKE_API_SECRET", "")
    if configured:
        return configured.encode()
    path = Path(settings.state_dir) / "api" / "page_token_secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(os.urandom(32).hex().encode())
    return path.read_bytes().strip()


class AuditMiddleware:
    """Writes one audit record per data or catalog request, after its response: key id, endpoint (the route
    template), dataset, rows returned, status. Handlers fill `request.state.audit`."""

    def __init__(self, app: Any, settings: Settings):
        self.app = app
        self.settings = settings
        self.prefixes = ("/datasets", "/catalog", *(f"/{r.name}" for r in resources.RESOURCES))

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        record: dict[str, Any] = {}
        scope.setdefault("state", {})["audit"] = record
        status = 500
        started = time.perf_counter()

        async def capture(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            await run_in_threadpool(access.audit, self.settings, {
                "key_id": record.get("key_id"), "method": scope["method"],
                "endpoint": getattr(route, "path", scope["path"]), "path": scope["path"],
                "dataset": record.get("dataset"), "rows": record.get("rows", 0), "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2)})


def create_app(settings: Settings) -> FastAPI:
    max_page_size = int(settings.get("CRONLAKE_API_MAX_PAGE_SIZE", "1000", check_positive))
    default_rate = int(settings.get("CRONLAKE_API_RATE_PER_MINUTE", "600", check_positive))
    secret = server_secret(settings)
    limiter = access.RateLimiter()
    lake: Lake = open_lake(settings)
    bearer = HTTPBearer(auto_error=False, description="An API key from `python -m api.keys create`.")

    app = FastAPI(title="cronlake lake API", version="1.0.0", docs_url=None, redoc_url=None,
                  description="Versioned datasets of the lake (with time travel) and their catalog. "
                              "Authenticate with `Authorization: Bearer <key>`.")
    app.add_middleware(AuditMiddleware, settings=settings)

    def current_key(request: Request,
                    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> ApiKey:
        if credentials is None:
            raise HTTPException(401, "an API key is required", headers=NOT_AUTHENTICATED)
        key = access.authenticate(settings, credentials.credentials, default_rate)
        if key is None:
            raise HTTPException(401, "unknown, expired or revoked API key", headers=NOT_AUTHENTICATED)
        request.state.audit["key_id"] = key.key_id
        wait = limiter.retry_after(key.key_id, key.rate_per_minute)
        if wait > 0:
            raise HTTPException(429, "rate limit exceeded", headers={"Retry-After": str(math.ceil(wait))})
        return key

    Key = Annotated[ApiKey, Depends(current_key)]

    def authorize(request: Request, key: ApiKey, name: str) -> None:
        request.state.audit["dataset"] = name
        if not key.may_read(name):
            raise HTTPException(403, "forbidden")

    def dataset_or_404(name: str) -> Dataset:
        found = resources.resolve(settings, name)
        if found is None:
            raise HTTPException(404, "dataset not available")
        return found

    def serve_rows(request: Request, key: ApiKey, name: str, resource: Resource | None, version: int | None,
                   as_of: datetime | None, page_size: int, page_token: str | None, since: datetime | None,
                   until: datetime | None, filters: dict[str, str]) -> JSONResponse:
        authorize(request, key, name)
        dataset = dataset_or_404(name)
        sort_key = tuple((resource.sort_key if resource else ()) or dataset.key)
        order = paging.total_order(dataset, sort_key)
        time_column = resource.time_column if resource else None
        unknown = sorted({*filters, *sort_key, *([time_column] if since or until else [])} - set(dataset.column_names))
        if unknown:
            raise HTTPException(400, f"{name} has no column {', '.join(map(str, unknown))}")
        after, skip = None, 0
        if page_token is not None:
            if version is not None or as_of is not None or since or until or filters:
                raise HTTPException(400, "page_token carries the query: send only page_token and page_size")
            try:
                token = paging.unsign(secret, page_token)
                if token.get("d") != name or not isinstance(token.get("k"), list):
                    raise paging.BadToken("page_token is for another dataset")
                query = paging.Query(int(token["v"]), dict(token.get("f") or {}), token.get("s"), token.get("u"))
                after, skip = token["k"], int(token.get("n", 0))
            except (paging.BadToken, KeyError, TypeError, ValueError) as exc:
                raise HTTPException(400, str(exc)) from None
        else:
            query = paging.Query(version, filters, iso(since), iso(until))
        try:
            page = paging.read_page(lake, dataset, order, query, time_column, page_size, after, skip,
                                    as_of=utc(as_of))
        except paging.BadToken as exc:
            raise HTTPException(400, str(exc)) from None
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None
        request.state.audit["rows"] = len(page.rows)
        body: dict[str, Any] = {"dataset": name, "version": page.version, "sort_key": list(sort_key),
                                "rows": page.rows, "next_page_token": None}
        headers = {}
        if page.more:
            last, equal = paging.cursor(page.rows, order, after, skip)
            body["next_page_token"] = paging.sign(secret, {
                "d": name, "v": page.version, "k": last, "n": equal, "f": dict(query.filters),
                "s": query.since, "u": query.until})
            next_url = str(request.url.replace(query=urlencode({"page_token": body["next_page_token"],
                                                                 "page_size": page_size})))
            headers["Link"] = f'<{next_url}>; rel="next"'
        return JSONResponse(jsonable_encoder(body), headers=headers)

    PageSize = Annotated[int, QueryParam(ge=1, le=max_page_size, description=f"Rows per page (1 to {max_page_size}).")]
    Version = Annotated[int | None, QueryParam(ge=0, description="Read this table version.")]
    AsOf = Annotated[datetime | None, QueryParam(description="Read the version current at this time (ISO-8601).")]
    Token = Annotated[str | None, QueryParam(description="The `next_page_token` of the previous page.")]

    @app.get("/health", tags=["service"], summary="Liveness (no key needed)")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/datasets/{name}/rows", tags=["data"], summary="Rows of any versioned dataset, in key order")
    def dataset_rows(request: Request, key: Key, name: Annotated[str, PathParam(description="Dataset name")],
                     version: Version = None, as_of: AsOf = None, page_size: PageSize = DEFAULT_PAGE_SIZE,
                     page_token: Token = None) -> JSONResponse:
        return serve_rows(request, key, name, None, version, as_of, page_size, page_token, None, None, {})

    for resource in resources.RESOURCES:
        app.add_api_route(f"/{resource.name}", resource_endpoint(resource, serve_rows, Key, Version, AsOf, PageSize,
                                                                  Token),
                          methods=["GET"], tags=["data"], response_class=JSONResponse,
                          summary=f"{resource.summary} (dataset {resource.dataset})")

    @app.get("/catalog/datasets", tags=["catalog"], summary="The datasets this key may read")
    def catalog_datasets(request: Request, key: Key) -> list[dict[str, Any]]:
        return readable(request, key, catalog.datasets(settings))

    @app.get("/catalog/search", tags=["catalog"], summary="Datasets by text, column and tag")
    def catalog_search(request: Request, key: Key,
                       q: Annotated[str | None, QueryParam(description="Text in the name or description")] = None,
                       column: Annotated[str | None, QueryParam(description="Has a column of this name")] = None,
                       tag: Annotated[str | None, QueryParam(description="Carries this tag")] = None
                       ) -> list[dict[str, Any]]:
        return readable(request, key, catalog.search(settings, text=q, column=column, tag=tag))

    @app.get("/catalog/datasets/{name}", tags=["catalog"], summary="One dataset: schema, owner, current version")
    def catalog_dataset(request: Request, key: Key, name: str) -> dict[str, Any]:
        authorize(request, key, name)
        found = catalog.dataset(settings, name)
        if found is None:
            raise HTTPException(404, "dataset not available")
        return jsonable_encoder(found)

    @app.get("/catalog/datasets/{name}/versions", tags=["catalog"], summary="A dataset's versions, newest first")
    def catalog_versions(request: Request, key: Key, name: str,
                         limit: Annotated[int, QueryParam(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        authorize(request, key, name)
        found = catalog.versions(settings, name, limit=limit)
        request.state.audit["rows"] = len(found)
        return jsonable_encoder(found)

    @app.get("/catalog/datasets/{name}/versions/{version}", tags=["catalog"],
             summary="One version: rows, schema, quality results and lineage")
    def catalog_version(request: Request, key: Key, name: str,
                        version: Annotated[int, PathParam(ge=0)]) -> dict[str, Any]:
        authorize(request, key, name)
        found = catalog.version(settings, name, version)
        if found is None:
            raise HTTPException(404, f"{name} has no version {version} in the catalog")
        described = catalog.dataset(settings, name) or {}
        return jsonable_encoder({**found, "schema": described.get("schema", []),
                                 "lineage": catalog.lineage(settings, name, version)})

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(docs_page.HTML)

    def readable(request: Request, key: ApiKey, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
        allowed = [d for d in documents if key.may_read(d["_id"])]
        request.state.audit["rows"] = len(allowed)
        return jsonable_encoder(allowed)

    return app


def resource_endpoint(resource: Resource, serve_rows: Callable[..., JSONResponse], key: Any, version: Any,
                      as_of: Any, page_size: Any, token: Any) -> Callable[..., JSONResponse]:
    """The handler of `/{resource}`: the generic rows reader with the resource's time range and filters as
    documented query parameters (its signature is built from the route table)."""

    def handler(request: Request, key: ApiKey, version: int | None, as_of: datetime | None, page_size: int,
                page_token: str | None, since: datetime | None = None, until: datetime | None = None,
                **filters: str | None) -> JSONResponse:
        chosen = {column: value for column, value in filters.items() if value is not None}
        return serve_rows(request, key, resource.dataset, resource, version, as_of, page_size, page_token, since,
                          until, chosen)

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("request", keyword, annotation=Request),
        inspect.Parameter("key", keyword, annotation=key),
        inspect.Parameter("version", keyword, annotation=version, default=None),
        inspect.Parameter("as_of", keyword, annotation=as_of, default=None),
        inspect.Parameter("page_size", keyword, annotation=page_size, default=DEFAULT_PAGE_SIZE),
        inspect.Parameter("page_token", keyword, annotation=token, default=None),
    ]
    if resource.time_column:
        for name, meaning in (("since", "at or after"), ("until", "before")):
            parameters.append(inspect.Parameter(name, keyword, default=None, annotation=Annotated[
                datetime | None, QueryParam(description=f"Rows whose {resource.time_column} is {meaning} this time")]))
    for column in resource.filters:
        parameters.append(inspect.Parameter(column, keyword, default=None, annotation=Annotated[
            str | None, QueryParam(description=f"Only rows whose {column} equals this value")]))
    handler.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    handler.__name__ = f"{resource.name.replace('-', '_')}_rows"
    return handler


def utc(moment: datetime | None) -> datetime | None:
    """A time without an offset is read as UTC."""
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else utc(moment).isoformat()

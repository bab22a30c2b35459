"""Data catalog: every versioned dataset (owner, tags, current version, quality status), searchable by name,
column and tag; a dataset's versions with their rows and quality results; and a version's lineage back to the
landing files and runs that made it. Deep links: `/catalog?dataset=<name>&version=<n>`."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, callback, dcc, html
from pymongo.errors import PyMongoError

from cronlake.core import catalog
from dashboard import store, ui
from dashboard.store import InvalidInput

PATH = "/catalog"
NAME = "Catalog"
DATASET_COLUMNS = [("name", "Dataset"), ("description", "Description"), ("owner", "Owner"), ("tags_text", "Tags"),
                   ("current_version", "Current version"), ("quality_status", "Quality"), ("updated", "Updated")]
VERSION_COLUMNS = [("version", "Version"), ("rows", "Rows added"), ("total_rows", "Rows in table"),
                   ("quality_status", "Quality"), ("inputs", "Landing files"), ("run_id", "Run"),
                   ("created", "Created")]
QUALITY_COLUMNS = [("rule", "Rule"), ("severity", "Severity"), ("state", "Result"), ("observed", "Observed"),
                   ("threshold", "Threshold"), ("detail", "Detail")]
SCHEMA_COLUMNS = [("name", "Column"), ("type", "Type")]


def layout(dataset: str | None = None, version: str | None = None, **_query: str) -> html.Div:
    number = int(version) if version and version.isdigit() else None
    # The dropdowns start with their options, so a deep link's values are valid before the first callback.
    try:
        settings = store.current().settings
        datasets = [{"label": d["_id"], "value": d["_id"]} for d in catalog.datasets(settings)]
        versions = [{"label": f"v{v['version']}", "value": v["version"]} for v in catalog.versions(settings, dataset)
                    ] if dataset else []
    except PyMongoError:
        datasets, versions = [], []
    return html.Div([
        html.H2(NAME),
        html.Div([
            dcc.Input(id="catalog-text", placeholder="name or description", debounce=True, type="search"),
            dcc.Input(id="catalog-column", placeholder="has column", debounce=True, type="search"),
            dcc.Input(id="catalog-tag", placeholder="tag", debounce=True, type="search"),
        ], className="controls"),
        html.Div(id="catalog-datasets"),
        html.Div([html.Label("Dataset", htmlFor="catalog-dataset"),
                  dcc.Dropdown(id="catalog-dataset", options=datasets, value=dataset, clearable=False),
                  html.Label("Version", htmlFor="catalog-version"),
                  dcc.Dropdown(id="catalog-version", options=versions, value=number)],
                 className="controls"),
        dcc.Loading(html.Div(id="catalog-detail")),
    ])


def described_rows(found: list[dict[str, Any]], tz: Any) -> list[dict[str, Any]]:
    return [{**d, "tags_text": ", ".join(d.get("tags") or []), "updated": ui.fmt_time(d.get("updated_at"), tz)}
            for d in found]


@ui.guarded
def render_datasets(text: str | None, column: str | None, tag: str | None) -> tuple[Any, list[dict[str, str]]]:
    s = store.current()
    everything = catalog.datasets(s.settings)
    if not everything:
        return ui.notice("The catalog is empty: no versioned dataset has been published yet (run, e.g., "
                         f"{store.RUN} retail_daily).", "no-data"), []
    found = catalog.search(s.settings, text=text or None, column=column or None, tag=tag or None)
    options = [{"label": d["_id"], "value": d["_id"]} for d in everything]
    if not found:
        return html.P("No dataset matches this search.", id="catalog-no-match"), options
    return ui.table("catalog-datasets-table", described_rows(found, s.settings.tz), DATASET_COLUMNS), options


def datasets_callback(text: str | None, column: str | None, tag: str | None) -> tuple[Any, list[dict[str, str]]]:
    rendered = render_datasets(text, column, tag)
    return rendered if isinstance(rendered, tuple) else (rendered, [])


def lineage_tree(node: dict[str, Any], tz: Any) -> html.Li:
    """One version, the landing files it was made from, and its upstream versions below it."""
    if node.get("version") is None or node.get("missing"):
        return html.Li(f"{node['dataset']} (version {node.get('version', '?')}: {node.get('missing', 'unversioned')})")
    files = [html.Li([html.Code(f["path"]), f" → {f.get('archived_as', '?')}, {f.get('bytes', '?')} bytes, sha256 "
                      f"{str(f.get('sha256', ''))[:12]}…"], className="lineage-file")
             for f in node.get("input_files") or []]
    return html.Li([
        html.Strong(f"{node['dataset']} v{node['version']}"),
        f" — run {node['run_id']} of {node['job']}, {ui.fmt_time(node.get('created_at'), tz)}",
        html.Ul([*files, *(lineage_tree(parent, tz) for parent in node.get("upstream") or [])]),
    ], className="lineage-node")


@ui.guarded
def render_detail(name: str | None, number: int | None) -> tuple[Any, list[dict[str, Any]]]:
    s = store.current()
    if not name:
        return html.P("Pick a dataset to see its versions and lineage."), []
    described = catalog.dataset(s.settings, name)
    if described is None:
        raise InvalidInput(f"no dataset named {name[:60]!r} in the catalog")
    tz = s.settings.tz
    versions = catalog.versions(s.settings, name)
    options = [{"label": f"v{v['version']}", "value": v["version"]} for v in versions]
    chosen = next((v for v in versions if v["version"] == number), versions[0] if versions else None)
    if chosen is None:
        return html.P(f"{name} has no version yet."), options
    version_rows = [{**v, "inputs": len(v.get("input_files") or []), "created": ui.fmt_time(v.get("created_at"), tz)}
                    for v in versions]
    quality_rows = [{**q, "state": "ok" if q["passed"] else ("WARNING" if q["severity"] == "warn" else "FAILED")}
                    for q in chosen.get("quality") or []]
    return html.Div([
        ui.section(f"{name}", html.P(described.get("description") or ""),
                   html.P(f"Owner {described.get('owner') or '—'} · key {', '.join(described.get('key') or []) or '—'}"
                          f" · partitioned by {', '.join(described.get('partition_by') or []) or '—'} · "
                          f"{described.get('format')} at {described.get('location')}"),
                   ui.table("catalog-schema", described.get("schema") or [], SCHEMA_COLUMNS, page_size=50)),
        ui.section("Versions", ui.table("catalog-versions", version_rows, VERSION_COLUMNS)),
        ui.section(f"Quality of v{chosen['version']} ({chosen.get('quality_status')})",
                   ui.table("catalog-quality", quality_rows, QUALITY_COLUMNS)
                   if quality_rows else html.P("No quality rule is declared for this dataset.")),
        ui.section(f"Lineage of v{chosen['version']}",
                   html.Ul([lineage_tree(catalog.lineage(s.settings, name, chosen["version"]), tz)],
                           id="catalog-lineage")),
    ]), options


def detail_callback(name: str | None, number: int | None) -> tuple[Any, list[dict[str, Any]]]:
    rendered = render_detail(name, number)
    return rendered if isinstance(rendered, tuple) else (rendered, [])


callback(Output("catalog-datasets", "children"), Output("catalog-dataset", "options"),
         Input("catalog-text", "value"), Input("catalog-column", "value"), Input("catalog-tag", "value"))(
    datasets_callback)
callback(Output("catalog-detail", "children"), Output("catalog-version", "options"),
         Input("catalog-dataset", "value"), Input("catalog-version", "value"))(detail_callback)

"""The cronlake Velib dashboard (Dash): live map, station, zones, empty/full stations, model and pipeline health.

It reads MongoDB only (the data db and the ops db of the settings). Production runs it under gunicorn:

    gunicorn --bind 0.0.0.0:8050 --workers 2 dashboard.app:server

and for local use, Dash's own (Flask) server, never with debug on:

    python -m dashboard.app --host 127.0.0.1 --port 8050
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import dash
from dash import Dash, dcc, html

from dashboard.pages import catalog, health
from dashboard.pages.churn import risk
from dashboard.pages.retail import campaigns, sales, social, traffic
from dashboard.pages.velib import capacity, extremes, live, model, station, zones

PAGES = (live, station, zones, extremes, capacity, model, risk, sales, traffic, social, campaigns, catalog, health)


def create_app() -> Dash:
    """Build the app (it only reads MongoDB: the indexes its queries use are created by the jobs that write)."""
    app = Dash(
        __name__, use_pages=True, pages_folder="", assets_folder=str(Path(__file__).parent / "assets"),
        title="cronlake", suppress_callback_exceptions=True, serve_locally=True,
    )
    for page in PAGES:
        dash.register_page(page.__name__, path=page.PATH, name=page.NAME, title=f"{page.NAME} · cronlake",
                           layout=page.layout)
    app.layout = html.Div([
        html.Header([
            html.H1("cronlake"),
            html.Nav([dcc.Link(page.NAME, href=page.PATH, id=f"nav-{page.__name__.rsplit('.', 1)[-1]}")
                      for page in PAGES]),
        ], className="topbar"),
        html.Main(dash.page_container),
    ])
    return app


app = create_app()
server = app.server


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dashboard.app", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8050, help="port to listen on (default 8050)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    app.run(host=args.host, port=args.port, debug=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

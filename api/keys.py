"""Manage the API's keys (stored hashed in the ops database).

    python -m api.keys create --name NAME --scope DATASET [--scope DATASET …] [--expires-days N] [--rate N]
    python -m api.keys list
    python -m api.keys revoke KEY_ID

`create` prints the key once (`<key id>.<secret>`): only its SHA-256 is stored. `--scope '*'` reads every
dataset. `--rate` is the key's requests per minute (default CRONLAKE_API_RATE_PER_MINUTE, 600).
"""

from __future__ import annotations

import argparse
from datetime import timedelta

from api import access
from cronlake.core import settings as settings_module
from cronlake.core.cli import EXIT_FAILED, EXIT_OK, one_line_errors
from cronlake.core.settings import SettingError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m api.keys", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--scope", action="append", required=True, metavar="DATASET",
                        help="a dataset the key may read ('*' for all); repeat for more")
    create.add_argument("--expires-days", type=float, help="the key stops working after this many days")
    create.add_argument("--rate", type=int, help="requests per minute for this key")
    commands.add_parser("list", help="list keys (never their secrets)")
    revoke = commands.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id")
    return parser


@one_line_errors(SettingError)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_module.load()
    if args.command == "create":
        if args.rate is not None and args.rate < 1:
            raise SettingError("--rate must be at least 1")
        expires = timedelta(days=args.expires_days) if args.expires_days else None
        token, _ = access.create_key(settings, args.name, args.scope, expires, args.rate)
        print(token)
    elif args.command == "list":
        for key in access.list_keys(settings):
            state = "revoked" if key.get("revoked_at") else "active"
            expires = key["expires_at"].isoformat() if key.get("expires_at") else "never"
            print(f"{key['_id']}\t{key.get('name', '')}\t{','.join(key.get('scopes', []))}\t{state}\t"
                  f"expires {expires}\trate {key.get('rate_per_minute') or 'default'}")
    elif not access.revoke_key(settings, args.key_id):
        print(f"error: no key {args.key_id}")
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())

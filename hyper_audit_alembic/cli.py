"""``python -m hyper_audit_alembic init | demo | history``.

Also installed as the ``hyper-audit-alembic`` script.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config

from .templates import template_dir


def init_environment(directory: str, config_file: str = "alembic.ini") -> Path:
    """Write alembic.ini and a plugin-wired migration environment, like ``alembic init``."""
    config = Config(config_file)
    command.init(config, directory, template=str(template_dir()))
    return Path(config_file)


def _init(args: argparse.Namespace) -> int:
    init_environment(args.directory, args.config)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(url=args.url, keep=args.keep)


_HAS_VERSION_2_COLUMNS = """
select exists (
    select from pg_catalog.pg_attribute
    where attrelid = 'audit.record_version'::regclass and attname = 'transaction_id'
        and not attisdropped
)
"""


def _history(args: argparse.Namespace) -> int:
    import json

    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from .history import _lookup, render_versions, version_as_json

    if not args.url:
        print("error: pass --url or set DATABASE_URL", file=sys.stderr)
        return 1
    engine = sa.create_engine(args.url)
    try:
        with Session(engine) as session:
            if session.scalar(sa.text("select to_regclass('audit.record_version')")) is None:
                print("error: no audit trail in this database", file=sys.stderr)
                return 1
            if not session.scalar(sa.text(_HAS_VERSION_2_COLUMNS)):
                print(
                    "error: the audit trail in this database is older than audit schema "
                    "version 2: upgrade it (op.upgrade_audit() in a migration) to read it here",
                    file=sys.stderr,
                )
                return 1
            target, versions = _lookup(session, args.table, tuple(args.key), read_as_sql=True)
    except (ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except sa.exc.DBAPIError as error:
        message = str(error.orig).strip().splitlines() or [str(error)]
        print(f"error: {message[0]}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps([version_as_json(v) for v in versions], ensure_ascii=False, indent=2))
        return 0 if versions else 1
    title = f"{args.table} ({', '.join(target.key_columns)}) = ({', '.join(args.key)})"
    if not versions:
        print(f"no audit rows for {title}", file=sys.stderr)
        return 1
    count = f"{len(versions)} change{'' if len(versions) == 1 else 's'}"
    print(f"{title}: {count}")
    print(render_versions(versions, target.columns), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hyper-audit-alembic",
        description="A PostgreSQL audit trail managed by Alembic migrations.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser(
        "init", help="write alembic.ini and an environment wired for the plugin"
    )
    init.add_argument("directory", help="where the migration environment goes (e.g. migrations)")
    init.add_argument("-c", "--config", default="alembic.ini", help="the alembic.ini to write")
    init.set_defaults(handler=_init)

    demo = commands.add_parser(
        "demo", help="run the audit trail end to end against a throwaway PostgreSQL"
    )
    demo.add_argument("--url", help="use this existing PostgreSQL database instead")
    demo.add_argument("--keep", action="store_true", help="keep the sample project directory")
    demo.set_defaults(handler=_demo)

    history = commands.add_parser(
        "history", help="print one record's audit history (ts, op, what changed)"
    )
    history.add_argument(
        "--url", default=os.environ.get("DATABASE_URL"), help="the database (or DATABASE_URL)"
    )
    history.add_argument("--json", action="store_true", help="print the audit rows as JSON")
    history.add_argument("table", help='the table, e.g. account or xyz."Members"')
    history.add_argument(
        "key", nargs="+", help="the primary-key value(s), in the order of the table's columns"
    )
    history.set_defaults(handler=_history)

    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except Exception as error:  # a clean message for people at a terminal
        from alembic.util import CommandError

        from .throwaway_postgres import PostgresNotFound

        if isinstance(error, (CommandError, PostgresNotFound)):
            print(f"error: {error}", file=sys.stderr)
            return 1
        raise

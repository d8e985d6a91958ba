"""``python -m hyper_audit_alembic init | demo`` (also the ``hyper-audit-alembic`` script)."""

from __future__ import annotations

import argparse
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

"""The command line: ``python -m hyper_audit_alembic init | demo | history | diff |
restore | revert | seal | verify | redact``.

Also installed as the ``hyper-audit-alembic`` script. Each command is a thin layer over
the package (templates, the demo, the history API); this module only parses arguments and
turns every failure into one line on stderr. Nothing imports it but ``__main__``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

from alembic.util import CommandError

from .templates import init_environment
from .urls import connect, postgresql_url, where

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine import URL
    from sqlalchemy.orm import Session

    from .runtime.history import ResolvedTable
    from .runtime.timemachine import WritePlan


def _init(args: argparse.Namespace) -> int:
    sidecar = args.sidecar is not None
    directory = args.sidecar if sidecar else args.directory
    if directory is None:
        raise CommandError("init needs a directory: init migrations, or init --sidecar DIR")
    if sidecar and args.directory is not None:
        raise CommandError(
            f"init --sidecar takes one directory: got {args.sidecar} and {args.directory}"
        )
    config = args.config or ("hyper_audit.ini" if sidecar else "alembic.ini")
    init_environment(directory, config, sidecar=sidecar)
    if sidecar:
        print(
            f"Declare the tables to audit in {directory}/audited.py, set sqlalchemy.url in "
            f"{config}, then: alembic -c {config} revision --autogenerate -m audit"
        )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .devtools.demo import run_demo

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

    from .runtime.history import lookup_record, parse_table_name, render_versions, version_as_json

    schema, _ = parse_table_name(args.table)
    with _audit_session(args, args.table) as session:
        target, versions = lookup_record(session, args.table, tuple(args.key), read_as_sql=True)
        if not versions:
            _explain_no_rows(session, args.table, schema, target)
    if args.json:
        print(json.dumps([version_as_json(v) for v in versions], ensure_ascii=False, indent=2))
        return 0 if versions else 1
    title = f"{args.table} ({', '.join(target.key_columns)}) = ({', '.join(args.key)})"
    if not versions:
        print(f"no audit rows for {title}", file=sys.stderr)
        return 1
    print(f"{title}: {_count(versions)}")
    print(render_versions(versions, target.columns), end="")
    return 0


def _count(versions: Sequence[object]) -> str:
    """``3 changes``; a baseline and redactions are counted apart: ``1 snapshot, 2 changes,
    1 redaction``."""
    snapshots = sum(1 for v in versions if str(getattr(v, "op", "")) == "SNAPSHOT")
    redactions = sum(1 for v in versions if str(getattr(v, "op", "")) == "REDACT")
    changes = len(versions) - snapshots - redactions
    count = f"{changes} change{'' if changes == 1 else 's'}"
    if snapshots:
        count = f"{snapshots} snapshot{'' if snapshots == 1 else 's'}, {count}"
    if redactions:
        count = f"{count}, {redactions} redaction{'' if redactions == 1 else 's'}"
    return count


def _shown(value: object) -> object:
    """A typed value as JSON-ready data: exact numbers and times as text."""
    import datetime as dt
    import uuid
    from decimal import Decimal

    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, (bytes, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_shown(v) for v in value]
    return value


def _diff(args: argparse.Namespace) -> int:
    import json
    from decimal import Decimal

    from .runtime.history import (
        context_shown,
        diff_versions,
        lookup_record,
        net_changes,
        parse_table_name,
        redaction_text,
    )

    schema, _ = parse_table_name(args.table)
    with _audit_session(args, args.table) as session:
        target, versions = lookup_record(session, args.table, tuple(args.key), read_as_sql=True)
        if not versions:
            _explain_no_rows(session, args.table, schema, target)
        versions = [
            v
            for v in versions
            if (args.from_version is None or v.id >= args.from_version)
            and (args.to_version is None or v.id <= args.to_version)
        ]
        diffs = diff_versions(session, target, versions)

    def show(value: object) -> str:
        if isinstance(value, Decimal):
            return str(value)
        return json.dumps(_shown(value), ensure_ascii=False)

    title = f"{args.table} ({', '.join(target.key_columns)}) = ({', '.join(args.key)})"
    if args.json:
        if args.net:
            print(
                json.dumps(
                    {name: _shown(list(change)) for name, change in net_changes(diffs).items()},
                    ensure_ascii=False,
                    indent=2,
                )
            )
        else:
            print(
                json.dumps(
                    [
                        {
                            "id": d.id,
                            "op": str(d.op),
                            "ts": d.ts.isoformat(),
                            "actor": d.version.actor,
                            "context": d.version.context,
                            "changes": {n: _shown(list(c)) for n, c in d.changes.items()},
                            "dropped": {n: _shown(list(c)) for n, c in d.dropped.items()},
                        }
                        for d in diffs
                    ],
                    ensure_ascii=False,
                    indent=2,
                )
            )
        return 0 if diffs else 1
    if not diffs:
        print(f"no audit rows for {title}", file=sys.stderr)
        return 1
    if args.net:
        print(f"{title}: from before version {diffs[0].id} to after version {diffs[-1].id}")
        for name, (before, after) in net_changes(diffs).items():
            print(f"  {name}: {show(before)} -> {show(after)}")
        return 0
    print(f"{title}: {len(diffs)} version{'' if len(diffs) == 1 else 's'}")
    for entry in diffs:
        shown_context = context_shown(entry.version)
        context = "" if shown_context is None else " " + show(shown_context)
        print(f"version {entry.id} {entry.op} {entry.ts} by {entry.version.actor}{context}")
        if entry.version.redaction is not None:
            print(f"  redacted {redaction_text(entry.version)}")
        for name, (before, after) in entry.changes.items():
            print(f"  {name}: {show(before)} -> {show(after)}")
        for name, (before, after) in entry.dropped.items():
            print(f"  {name} (dropped since): {show(before)} -> {show(after)}")
    return 0


_TRACKED = """
select exists (
    select from pg_catalog.pg_trigger t
    join pg_catalog.pg_proc p on p.oid = t.tgfoid
    join pg_catalog.pg_namespace n on n.oid = p.pronamespace
    where t.tgrelid = :oid and n.nspname = 'audit' and not t.tgisinternal
)
"""


def _explain_no_rows(
    session: Session, shown: str, schema: str | None, target: ResolvedTable
) -> None:
    """Raise for a table that does not exist, or is not tracked and has no audit rows.

    A table with audit rows (tracked now or before) is not an error: the record simply
    has none, which the caller reports.
    """
    import sqlalchemy as sa

    from .runtime.history import RecordVersion

    has_rows = target.oids and session.scalar(
        sa.select(sa.literal(True)).select_from(RecordVersion).where(target.row_filter()).limit(1)
    )
    if has_rows:
        return
    if target.current_oid is None:
        raise CommandError(f"no such table: {shown}")
    if not session.scalar(sa.text(_TRACKED), {"oid": target.current_oid}):
        call = f"op.enable_tracking({target.name!r}" + (
            f", schema={target.schema!r})" if schema else ")"
        )
        raise CommandError(
            f"table {shown} is not tracked (track it with {call} in a migration "
            f"or __audited__ = True on its model)"
        )


@contextmanager
def _audit_session(args: argparse.Namespace, shown: str | None) -> Iterator[Session]:
    """A session on ``--url``'s database, refused in one line unless it has an audit trail
    (version 2 on); a database error inside becomes one line too (``--debug`` shows more).
    Every command that reads or writes through the trail opens its database here."""
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    if not args.url:
        raise CommandError(
            "no database given: pass --url postgresql://user:password@host/dbname "
            "or set DATABASE_URL"
        )
    url = postgresql_url(args.url)
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        connect(engine, url).close()
        with Session(engine) as session:
            _audited_session_check(session, url, shown)
            yield session
    except sa.exc.DBAPIError as error:
        message = str(error.orig).strip().splitlines() or [str(error)]
        raise CommandError(message[0]) from error
    finally:
        engine.dispose()


def _audited_session_check(session: Session, url: URL, shown: str | None) -> None:
    """Refuse a database without an audit trail (version 2 on) in one line."""
    import sqlalchemy as sa

    if session.scalar(sa.text("select to_regclass('audit.record_version')")) is None:
        if shown and session.scalar(sa.text("select to_regclass(:t)"), {"t": shown}) is None:
            raise CommandError(f"no such table: {shown}")
        raise CommandError(
            f"no audit trail in {where(url)}: install it (op.install_audit() in a "
            "migration), then track the table"
        )
    if not session.scalar(sa.text(_HAS_VERSION_2_COLUMNS)):
        raise CommandError(
            "the audit trail in this database is older than audit schema "
            "version 2: upgrade it (op.upgrade_audit() in a migration) to read it here"
        )


def _write_command(
    args: argparse.Namespace, shown: str | None, run: Callable[[Session], WritePlan]
) -> int:
    """Open the database, run ``run(session)`` (a restore or revert), print the plan and
    commit unless ``--dry-run``; a conflict is one line (the plan on stdout first)."""

    from .errors import ConflictError
    from .runtime.context import audit_context

    with _audit_session(args, shown) as session:
        context = {} if args.reason is None else {"reason": args.reason}
        with audit_context(session, actor=args.actor, **context):
            try:
                plan = run(session)
            except ConflictError as conflict:
                raise CommandError(str(conflict)) from conflict
            if args.dry_run:
                session.rollback()
            else:
                session.commit()
    print(plan)
    count = len(plan.writes)
    rows = f"{count} row{'' if count == 1 else 's'}"
    if args.dry_run:
        print(f"dry run: {rows} would be written, nothing written")
        if plan.conflicts:
            raise CommandError(
                f"{len(plan.conflicts)} conflict(s): a run without --dry-run would refuse "
                f"and write nothing (the first: {plan.conflicts[0]})"
            )
    else:
        print(f"wrote {rows} (committed)")
    return 0


def _restore(args: argparse.Namespace) -> int:
    import datetime as dt

    from .runtime.history import parse_table_name
    from .runtime.history.resolve import describe_model, resolve
    from .runtime.history.versions import key_as_written
    from .runtime.timemachine import restore, undelete

    parse_table_name(args.table)
    to: int | dt.datetime | None = None
    if args.to is not None:
        if args.to.isdigit():
            to = int(args.to)
        else:
            try:
                to = dt.datetime.fromisoformat(args.to)
            except ValueError:
                raise CommandError(
                    f"--to {args.to}: give a version's audit id (see history) or a time "
                    "with its time zone, e.g. 2024-05-01T12:00:00+00:00"
                ) from None
            if to.utcoffset() is None:
                raise CommandError(f"--to {args.to}: give the time zone too, e.g. {args.to}+00:00")

    def run(session: Session) -> WritePlan:
        target = resolve(session, describe_model(args.table))
        key: tuple[object, ...] = tuple(args.key)
        if target.current_oid is not None and target.key_columns:
            key = key_as_written(session, target, key)
        if to is None:
            return undelete(session, args.table, key, force=args.force, dry_run=args.dry_run)
        return restore(session, args.table, key, to=to, force=args.force, dry_run=args.dry_run)

    return _write_command(args, args.table, run)


def _revert(args: argparse.Namespace) -> int:
    import json

    from .runtime.timemachine import revert_context, revert_transaction

    if (args.transaction is None) == (not args.context):
        raise CommandError("revert needs --transaction N or --context key=value (one of them)")
    context: dict[str, object] = {}
    for item in args.context or ():
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise CommandError(f"--context {item}: write it as key=value, e.g. request_id=r-1")
        try:
            context[name] = json.loads(text)
        except ValueError:
            context[name] = text

    def run(session: Session) -> WritePlan:
        if args.transaction is not None:
            return revert_transaction(session, args.transaction, dry_run=args.dry_run)
        return revert_context(session, context, dry_run=args.dry_run)

    return _write_command(args, None, run)


def _read_key_file(path: str | None) -> bytes | None:
    """The raw bytes of ``--key-file`` (None without one), refused in one line when it is
    missing, empty or shorter than a key must be."""
    from .runtime.compliance.keys import MIN_KEY_BYTES

    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            key = handle.read()
    except FileNotFoundError:
        raise CommandError(f"--key-file {path}: no such file") from None
    except OSError as error:
        raise CommandError(f"--key-file {path}: {error.strerror or error}") from None
    if len(key) < MIN_KEY_BYTES:
        raise CommandError(
            f"--key-file {path}: "
            + ("the file is empty" if not key else f"it holds {len(key)} byte(s)")
            + f"; a key needs at least {MIN_KEY_BYTES} (e.g. head -c 32 /dev/urandom > {path})"
        )
    return key


def _seal(args: argparse.Namespace) -> int:
    from .runtime.compliance import seal

    key = _read_key_file(args.key_file)
    with _audit_session(args, None) as session:
        result = seal(session, key=key)
        session.commit()
    if result is None:
        print("nothing to seal: every committed audit row is sealed already")
        return 0
    rows = f"{result.rows_sealed} row{'' if result.rows_sealed == 1 else 's'}"
    segments = f"{result.segments} segment{'' if result.segments == 1 else 's'}"
    keyed = ", keyed" if result.keyed else ""
    print(f"sealed link {result.link_id}: {rows} in {segments}{keyed}")
    print(f"chain hash {result.chain_hash}")
    print("keep this hash elsewhere (a ticket, a log): verify shows the latest one to compare")
    return 0


def _verify(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from .runtime.compliance import verify

    key = _read_key_file(args.key_file)
    with _audit_session(args, None) as session:
        report = verify(
            session, from_link=args.from_link, to_link=args.to_link, key=key, anchor=args.anchor
        )
        session.rollback()
    if args.json:
        print(json.dumps(dataclasses.asdict(report), ensure_ascii=False, indent=2))
        return 0 if report.ok else 1
    print(report.summary())
    if report.first_failure is not None:
        return 1
    if report.unsealed_rows:
        count = report.unsealed_rows
        print(f"{count} audit row{'' if count == 1 else 's'} not sealed yet (seal covers them)")
    if report.not_keyed:
        first, last = report.not_keyed[0], report.not_keyed[-1]
        links = f"link {first}" if first == last else f"links {first}-{last}"
        print(
            f"{links} not keyed yet: the key covers the chain up to link {first - 1} "
            "(the next seal --key-file covers them)"
            if first > 1
            else f"{links} not keyed yet: no link holds a mac of this key"
        )
    return 0


def _redact(args: argparse.Namespace) -> int:
    import json

    from .runtime.compliance import redact
    from .runtime.context import audit_context
    from .runtime.history import parse_table_name

    parse_table_name(args.table)
    try:
        key = json.loads(args.key)
    except ValueError:
        key = None
    if not isinstance(key, dict) or not key:
        raise CommandError(
            f"--key {args.key}: give the primary key as a JSON object by column name, "
            "e.g. --key '{\"id\": 7}'"
        )
    with _audit_session(args, args.table) as session:
        with audit_context(session, actor=args.actor):
            result = redact(session, args.table, key, columns=args.column, reason=args.reason)
        session.commit()
    rows = f"{result.rows_redacted} audit row{'' if result.rows_redacted == 1 else 's'}"
    what = "the whole row image" if result.columns is None else ", ".join(result.columns)
    shown_key = json.dumps({k: _shown(v) for k, v in result.key.items()}, ensure_ascii=False)
    print(f"redacted {what} of {result.table} {shown_key} in {rows}; link {result.link_id}")
    return 0


def _add_write_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--url", default=os.environ.get("DATABASE_URL"), help="the database (or DATABASE_URL)"
    )
    command.add_argument(
        "--dry-run", action="store_true", help="print what would be written; write nothing"
    )
    command.add_argument("--actor", help="the actor the audit rows of the writes record")
    command.add_argument("--reason", help="recorded in the writes' audit context as reason")


def error_line(error: BaseException) -> str:
    """A failure as one line: what went wrong and, where we know it, what to do."""
    import sqlalchemy as sa

    from .errors import PostgresNotFound

    if isinstance(error, (CommandError, PostgresNotFound, ValueError, TypeError)):
        text = str(error)
    elif isinstance(error, sa.exc.NoSuchModuleError):
        text = f"{error}: use postgresql://user:password@host:port/dbname"
    elif isinstance(error, sa.exc.DBAPIError):
        lines = str(error.orig).strip().splitlines()
        text = lines[0] if lines else type(error.orig).__name__
    else:
        lines = str(error).strip().splitlines()
        first = lines[0] if lines else ""
        text = f"{type(error).__name__}: {first} (run with --debug for the traceback)"
    return " ".join(text.split("\n")[0].split()) if text else type(error).__name__


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (argparse's exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: every failure is one line on stderr and exit code 1.

    ``--debug`` (before or after the command) shows the traceback instead.
    """
    debug_flag = _Parser(add_help=False)
    debug_flag.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of a failure",
    )
    parser = _Parser(
        prog="hyper-audit-alembic",
        description="A PostgreSQL audit trail managed by Alembic migrations.",
        parents=[debug_flag],
    )
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser(
        "init",
        help="write alembic.ini and an environment wired for the plugin",
        parents=[debug_flag],
    )
    init.add_argument(
        "directory", nargs="?", help="where the migration environment goes (e.g. migrations)"
    )
    init.add_argument(
        "--sidecar",
        metavar="DIR",
        help="write an environment that manages only the audit trail, beside an app whose "
        "schema another tool owns (own version table hyper_audit_version; config "
        "hyper_audit.ini unless -c)",
    )
    init.add_argument(
        "-c",
        "--config",
        help="the config file to write (alembic.ini; hyper_audit.ini with --sidecar)",
    )
    init.set_defaults(handler=_init)

    demo = commands.add_parser(
        "demo",
        help="run the audit trail end to end against a throwaway PostgreSQL",
        parents=[debug_flag],
    )
    demo.add_argument(
        "--url",
        help="use this PostgreSQL server instead: the demo works in a scratch database it "
        "creates there and drops afterwards",
    )
    demo.add_argument(
        "--keep",
        action="store_true",
        help="keep the sample project directory (and, with --url, the demo's database)",
    )
    demo.set_defaults(handler=_demo)

    history = commands.add_parser(
        "history",
        help="print one record's audit history (ts, op, what changed)",
        parents=[debug_flag],
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

    diff_command = commands.add_parser(
        "diff",
        help="print what each version of one record changed (column: before -> after)",
        parents=[debug_flag],
    )
    diff_command.add_argument(
        "--url", default=os.environ.get("DATABASE_URL"), help="the database (or DATABASE_URL)"
    )
    diff_command.add_argument("--json", action="store_true", help="print the changes as JSON")
    diff_command.add_argument(
        "--from",
        dest="from_version",
        type=int,
        metavar="V",
        help="from audit row id V on (the versions' ids, as history --json shows them)",
    )
    diff_command.add_argument(
        "--to", dest="to_version", type=int, metavar="V", help="up to audit row id V"
    )
    diff_command.add_argument(
        "--net",
        action="store_true",
        help="one difference: before the first version shown and after the last",
    )
    diff_command.add_argument("table", help='the table, e.g. account or xyz."Members"')
    diff_command.add_argument(
        "key", nargs="+", help="the primary-key value(s), in the order of the table's columns"
    )
    diff_command.set_defaults(handler=_diff)

    restore_command = commands.add_parser(
        "restore",
        help="put one record back as one of its versions (or undelete it); writes and "
        "commits unless --dry-run",
        parents=[debug_flag],
    )
    _add_write_options(restore_command)
    restore_command.add_argument("table", help='the table, e.g. account or xyz."Members"')
    restore_command.add_argument(
        "key", nargs="+", help="the primary-key value(s), in the order of the table's columns"
    )
    restore_command.add_argument(
        "--to",
        metavar="VERSION_ID|TIMESTAMP",
        help="a version's audit id (see history --json) or a time with its zone; without "
        "it: undelete (the row as it was when deleted)",
    )
    restore_command.add_argument(
        "--force",
        action="store_true",
        help="overwrite a row changed outside the audit trail",
    )
    restore_command.set_defaults(handler=_restore)

    revert_command = commands.add_parser(
        "revert",
        help="undo one transaction's or one request's changes, newest first; writes and "
        "commits unless --dry-run",
        parents=[debug_flag],
    )
    _add_write_options(revert_command)
    revert_command.add_argument(
        "--transaction", type=int, metavar="N", help="the transaction id (history --json)"
    )
    revert_command.add_argument(
        "--context",
        action="append",
        metavar="KEY=VALUE",
        help="the changes whose audit context holds this (repeatable; VALUE read as JSON "
        "when it is JSON, e.g. request_id=r-1)",
    )
    revert_command.set_defaults(handler=_revert)

    seal_command = commands.add_parser(
        "seal",
        help="seal every committed audit row not sealed yet (a link of the hash chain); "
        "prints the new chain hash to keep elsewhere",
        parents=[debug_flag],
    )
    seal_command.add_argument(
        "--url", default=os.environ.get("DATABASE_URL"), help="the database (or DATABASE_URL)"
    )
    seal_command.add_argument(
        "--key-file",
        metavar="F",
        help="key the seal: store the HMAC-SHA256 of its chain hash under the file's bytes "
        "(16 or more; the database never sees the key)",
    )
    seal_command.set_defaults(handler=_seal)

    verify_command = commands.add_parser(
        "verify",
        help="recompute the seal chain; exit 0 when it holds, 1 at the first link that fails",
        parents=[debug_flag],
    )
    verify_command.add_argument(
        "--url", default=os.environ.get("DATABASE_URL"), help="the database (or DATABASE_URL)"
    )
    verify_command.add_argument(
        "--from", dest="from_link", type=int, metavar="N", help="from link N on"
    )
    verify_command.add_argument("--to", dest="to_link", type=int, metavar="N", help="up to link N")
    verify_command.add_argument(
        "--key-file",
        metavar="F",
        help="also check each keyed link's HMAC with the key the seals were made with",
    )
    verify_command.add_argument(
        "--anchor",
        metavar="HASH",
        help="a chain hash seal printed and you kept elsewhere: some link must have it",
    )
    verify_command.add_argument("--json", action="store_true", help="print the report as JSON")
    verify_command.set_defaults(handler=_verify)

    redact_command = commands.add_parser(
        "redact",
        help="erase one record's values (some columns, or the whole row image) from every "
        "version of it in the audit trail; audited, and commits",
        parents=[debug_flag],
    )
    redact_command.add_argument(
        "--url", default=os.environ.get("DATABASE_URL"), help="the database (or DATABASE_URL)"
    )
    redact_command.add_argument(
        "--table", required=True, help='the table, e.g. public.account or xyz."Members"'
    )
    redact_command.add_argument(
        "--key", required=True, help="the primary key as JSON by column name: '{\"id\": 7}'"
    )
    redact_command.add_argument(
        "--column",
        action="append",
        metavar="C",
        help="a column whose values to erase (repeatable); without it, the whole row image",
    )
    redact_command.add_argument(
        "--reason", required=True, help="why (recorded in the REDACT audit row)"
    )
    redact_command.add_argument("--actor", help="the actor the REDACT audit row records")
    redact_command.set_defaults(handler=_redact)

    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except Exception as error:
        if getattr(args, "debug", False):
            raise
        print(f"error: {error_line(error)}", file=sys.stderr)
        return 1

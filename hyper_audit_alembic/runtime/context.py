"""Who made a change, and why: the actor and context of the application's transactions.

From audit schema version 2 on, every audit row carries ``actor``, ``context`` and
``transaction_id``. Column defaults fill them from two transaction-local settings::

    with audit_context(session, actor="user:42", request_id="r-1", endpoint="/orders"):
        session.add(order)
        session.commit()

Inside the block the session's transactions (the current one, and every one begun before
the block ends, e.g. after a ``commit()`` in it) carry ``hyper_audit.actor`` and
``hyper_audit.context``, set with ``set_config(name, value, true)``: local to the
transaction, so they end with it and nothing stays in the database session. A pooled
connection never carries them into the next transaction, and PgBouncer's transaction
pooling is fine (whatever server connection a transaction gets, the values travel in it).

Without a context, the audit rows record the database role the session acts as (see
sql/steps/2.sql). Other languages and raw SQL set the same settings::

    select set_config('hyper_audit.actor', 'user:42', true),
           set_config('hyper_audit.context', '{"request_id": "r-1"}', true);
"""

from __future__ import annotations

import json
import sys
import weakref
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, scoped_session

from ..adapters import isolation_level_on_connect

__all__ = ["ACTOR_SETTING", "CONTEXT_SETTING", "audit_context"]

_ASYNCIO_MODULE = "sqlalchemy.ext.asyncio"

#: The transaction-local setting the ``actor`` column's default reads.
ACTOR_SETTING = "hyper_audit.actor"
#: The transaction-local setting (jsonb text) the ``context`` column's default reads.
CONTEXT_SETTING = "hyper_audit.context"

_SET = sa.text(
    f"select pg_catalog.set_config('{ACTOR_SETTING}', :actor, true),"
    f" pg_catalog.set_config('{CONTEXT_SETTING}', :context, true)"
)

# (actor, context) as the settings' texts; ('', '') is no context.
_Values = tuple[str, str]
_NONE: _Values = ("", "")


def _values(actor: str | None, context: dict[str, Any]) -> _Values:
    return (
        actor or "",
        json.dumps(context, ensure_ascii=False, default=str) if context else "",
    )


def _asyncio_class(name: str) -> type | None:
    """One of SQLAlchemy's asyncio classes, if the asyncio extension is loaded.

    Never imports it: the extension needs greenlet, which a plain install of SQLAlchemy 2.1
    does not bring, so importing it would break every synchronous use. Whoever holds an
    AsyncSession, AsyncConnection or AsyncEngine has imported the extension already.
    """
    module = sys.modules.get(_ASYNCIO_MODULE)
    found = getattr(module, name, None) if module is not None else None
    return found if isinstance(found, type) else None


def _is_instance_of_asyncio(target: object, *names: str) -> bool:
    return any(cls is not None and isinstance(target, cls) for cls in map(_asyncio_class, names))


def _refuse_autocommit(bind: Connection | Engine) -> None:
    """No context in AUTOCOMMIT mode (the isolation level SQLAlchemy applies)."""
    level = bind.get_execution_options().get("isolation_level")
    if level is None:
        level = isolation_level_on_connect(bind.dialect)
    if level == "AUTOCOMMIT":
        raise ValueError(
            "audit_context: the connection is in AUTOCOMMIT mode, where each statement is a "
            "transaction of its own, so no transaction can carry the actor and context; "
            "run the changes in a transaction (the default isolation level)"
        )


def _apply(connection: Connection, values: _Values) -> None:
    _refuse_autocommit(connection)
    connection.execute(_SET, {"actor": values[0], "context": values[1]})


@dataclass(eq=False)
class _Binding:
    """The open audit_context blocks of one Session or Connection, innermost last."""

    target: Session | Connection
    stack: list[_Values] = field(default_factory=list)
    # The actor and context of each open block, with what it took from the enclosing ones.
    given: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    # Session: the connections whose transaction got the values.
    connections: list[Connection] = field(default_factory=list)
    # Connection: the transaction that got them; set while running set_config.
    transaction: object | None = None
    applying: bool = False
    applied: int = 0  # how many times the values were set

    def listen(self) -> None:
        if isinstance(self.target, Session):
            event.listen(self.target, "after_begin", self._after_begin)
        else:
            event.listen(self.target, "before_cursor_execute", self._before_cursor_execute)

    def unlisten(self) -> None:
        if isinstance(self.target, Session):
            event.remove(self.target, "after_begin", self._after_begin)
        else:
            event.remove(self.target, "before_cursor_execute", self._before_cursor_execute)

    # -- Session: each connection the session begins a transaction on ------------------

    def _after_begin(self, session: Session, transaction: object, connection: Connection) -> None:
        self._apply_to_session_connection(connection)

    def _apply_to_session_connection(self, connection: Connection) -> None:
        self.connections = [c for c in self.connections if self._open(c)]
        _apply(connection, self.stack[-1])
        self.applied += 1
        if connection not in self.connections:
            self.connections.append(connection)

    @staticmethod
    def _open(connection: Connection) -> bool:
        return not connection.closed and connection.in_transaction()

    # -- Connection: each transaction it begins (autobegin after a commit, too) ---------

    def _before_cursor_execute(self, connection: Connection, *args: Any) -> None:
        if self.applying:
            return
        current = connection.get_transaction()
        if current is not None and current is self.transaction:
            return
        self._apply_to_connection()

    def _apply_to_connection(self) -> None:
        assert isinstance(self.target, Connection)
        self.applying = True
        try:
            _apply(self.target, self.stack[-1])
        finally:
            self.applying = False
        self.transaction = self.target.get_transaction()

    # -- entering and leaving a block ----------------------------------------------------

    def push(self, actor: str | None, context: dict[str, Any]) -> None:
        if self.given:  # a block inside another: its values over the enclosing block's
            outer_actor, outer_context = self.given[-1]
            actor = outer_actor if actor is None else actor
            context = {**outer_context, **context}
        values = _values(actor, context)
        self.given.append((actor, context))
        self.stack.append(values)
        # The transaction open now gets the values at once. None is begun here (the block
        # may well begin one itself: with session.begin(): ...): a transaction begun later
        # gets them as it begins (Session: after_begin) or before its first statement
        # (Connection).
        target = self.target
        if isinstance(target, Connection):
            _refuse_autocommit(target)
            if target.in_transaction():
                self._apply_to_connection()
            return
        try:
            _refuse_autocommit(target.get_bind())
        except sa.exc.UnboundExecutionError:  # binds by mapper: checked as each begins
            pass
        if target.in_transaction():
            applied = self.applied
            try:
                connection = target.connection()
            except sa.exc.UnboundExecutionError:
                return
            if self.applied == applied:  # no after_begin: the connection was in it already
                self._apply_to_session_connection(connection)

    def pop(self, failed: bool) -> None:
        self.stack.pop()
        self.given.pop()
        values = self.stack[-1] if self.stack else _NONE
        try:
            if isinstance(self.target, Connection):
                current = self.target.get_transaction()
                if current is not None and current is self.transaction:
                    self.applying = True
                    try:
                        _apply(self.target, values)
                    finally:
                        self.applying = False
            else:
                for connection in self.connections:
                    if self._open(connection):
                        _apply(connection, values)
        except sa.exc.SQLAlchemyError:
            # Leaving on an error: the transaction may be aborted, and it will be rolled
            # back, which takes the settings with it. The original error goes on.
            if not failed:
                raise


_bindings: weakref.WeakKeyDictionary[Session | Connection, _Binding] = weakref.WeakKeyDictionary()


class audit_context:  # a class used like a function: with audit_context(...)
    """Set the actor and context of a session's or connection's transactions in a block.

    ``audit_context(session_or_connection, actor=None, **context)``; use it with ``with``
    for a ``Session`` (or ``scoped_session``) or a ``Connection``, with ``async with`` for
    an ``AsyncSession`` or an ``AsyncConnection``.

    - ``actor``: who acts, free text such as ``"user:42"`` (None: the database role is
      recorded). ``context``: free-form JSON values (request id, endpoint, reason ...);
      values JSON cannot hold (UUID, datetime ...) are written as their ``str()``.
    - The values are set with ``set_config(name, value, true)``, as bind parameters: for
      the transaction only. They are set on entry in the transaction open then, and in
      every transaction begun before the block ends (none is begun on entry, so the block
      may begin one: ``with session.begin():``).
    - A block inside another (on the same session or connection) takes the enclosing
      block's actor unless it names one, and adds its context values to the enclosing
      block's.
    - On leaving the block normally a ``Session`` is flushed first, so that the changes
      made in the block carry the context also when they are committed after it; then the
      values of an enclosing block, or none, apply to the rest of the transaction.
    - Needs a transaction: a connection in AUTOCOMMIT mode is refused (ValueError).
    """

    def __init__(self, target: object, /, actor: str | None = None, **context: Any) -> None:
        if isinstance(target, scoped_session):
            target = target()
        elif _is_instance_of_asyncio(target, "async_scoped_session"):
            target = target()  # type: ignore[operator]  # the task's AsyncSession
        if actor is not None and not isinstance(actor, str):
            raise TypeError(f"audit_context: actor must be a str or None, not {actor!r}")
        if isinstance(target, Engine):
            raise TypeError(
                "audit_context: pass a Session or a Connection, not an Engine: the actor and "
                "context belong to a transaction (with engine.begin() as connection: ...)"
            )
        if _is_instance_of_asyncio(target, "AsyncEngine"):
            raise TypeError(
                "audit_context: pass an AsyncSession or an AsyncConnection, not an AsyncEngine: "
                "the actor and context belong to a transaction "
                "(async with engine.begin() as connection: ...)"
            )
        self.target = target
        self.actor = actor
        self.context = context
        _values(actor, context)  # JSON errors here, not in the block

    def _is_async(self) -> bool:
        return _is_instance_of_asyncio(self.target, "AsyncSession", "AsyncConnection")

    def _enter(self, target: Session | Connection) -> None:
        if not isinstance(target, (Session, Connection)):
            raise TypeError(
                "audit_context: pass a Session, a Connection, an AsyncSession or an "
                f"AsyncConnection, not {type(target).__name__}"
            )
        binding = _bindings.get(target)
        if binding is None:
            binding = _bindings[target] = _Binding(target)
            binding.listen()
        try:
            binding.push(self.actor, self.context)
        except BaseException:
            self._leave(target, failed=True)
            raise

    def _leave(self, target: Session | Connection, failed: bool) -> None:
        binding = _bindings[target]
        try:
            if not failed and isinstance(target, Session):
                try:
                    target.flush()
                except BaseException:
                    failed = True
                    raise
        finally:
            try:
                binding.pop(failed)
            finally:
                if not binding.stack:
                    binding.unlisten()
                    del _bindings[target]

    def __enter__(self) -> audit_context:
        if self._is_async():
            raise TypeError(
                "audit_context: use 'async with audit_context(...)' for an AsyncSession or "
                "an AsyncConnection"
            )
        self._enter(self.target)  # type: ignore[arg-type]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._leave(self.target, failed=exc_type is not None)  # type: ignore[arg-type]

    async def __aenter__(self) -> audit_context:
        if not self._is_async():
            raise TypeError(
                "audit_context: use 'with audit_context(...)' for a Session or a Connection"
            )
        await self.target.run_sync(self._enter)  # type: ignore[attr-defined]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        failed = exc_type is not None
        await self.target.run_sync(  # type: ignore[attr-defined]
            lambda sync_target: self._leave(sync_target, failed)
        )

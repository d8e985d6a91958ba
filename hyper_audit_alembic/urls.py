"""Database URLs as users write them: ``postgresql://…`` works with the driver installed.

SQLAlchemy 2.1 maps a plain ``postgresql://`` URL to psycopg (3), 2.0 to psycopg2, and no
release knows ``postgres://`` (the scheme Heroku, libpq and many hosting dashboards write).
A plain install of this package brings psycopg2 only, so a plain URL would fail with
``No module named 'psycopg'``. :func:`engine_url` names the driver that is installed;
the CLI, the demo and the migration template all go through it.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

#: The synchronous drivers a plain ``postgresql://`` URL may use, preferred first
#: (psycopg2 is the package's own dependency), as (SQLAlchemy driver name, module).
DRIVERS: tuple[tuple[str, str], ...] = (("psycopg2", "psycopg2"), ("psycopg", "psycopg"))

EXPECTED = "postgresql://user:password@host:port/dbname"


def _installed_driver() -> str:
    for driver, module in DRIVERS:
        if importlib.util.find_spec(module) is not None:
            return driver
    raise ValueError(
        "no PostgreSQL driver is installed: pip install psycopg2-binary (or psycopg[binary])"
    )


def engine_url(text: str | URL) -> URL:
    """The SQLAlchemy URL for ``text``, with the installed driver for a plain PostgreSQL URL.

    ``postgresql://`` and ``postgres://`` get psycopg2 if it is installed, else psycopg 3;
    ``postgres+driver://`` becomes ``postgresql+driver://``; an explicit
    ``postgresql+driver://`` and URLs of other databases are kept as given.
    Raises ValueError (one line, without the password) for text that is not a URL.
    """
    if isinstance(text, URL):
        url = text
    else:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"no database URL given: expected {EXPECTED}")
        try:
            url = sa.make_url(text.strip())
        except sa.exc.ArgumentError:
            scheme = text.partition("://")[0] if "://" in text else ""
            shown = f" (scheme {scheme!r})" if scheme else ""
            raise ValueError(f"not a database URL{shown}: expected {EXPECTED}") from None
    backend, _, driver = url.drivername.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    if backend != "postgresql":
        return url
    return url.set(drivername=f"postgresql+{driver or _installed_driver()}")


def postgresql_url(text: str | URL) -> URL:
    """:func:`engine_url`, refusing a URL of another database (the audit trail is PostgreSQL's)."""
    url = engine_url(text)
    if url.get_backend_name() != "postgresql":
        raise ValueError(
            f"hyper_audit_alembic needs PostgreSQL, and this is a {url.get_backend_name()} URL: "
            f"expected {EXPECTED}"
        )
    return url


def url_text(url: URL) -> str:
    """The URL as a string another process can connect with (the password included)."""
    return url.render_as_string(hide_password=False)


def where(url: URL) -> str:
    """``host:port/dbname`` for messages (never the password)."""
    host = url.host or "localhost"
    port = f":{url.port}" if url.port else ""
    return f"{host}{port}/{url.database or ''}"


def _sqlstate(error: BaseException) -> str | None:
    orig: Any = getattr(error, "orig", error)
    found = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)
    return str(found) if found else None


def _driver_message(error: BaseException) -> str:
    """The driver's message without its "connection to server … failed:" preamble."""
    orig: Any = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(orig).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(orig).__name__
    if "failed: " in text and text.startswith("connection to server"):
        text = text.split("failed: ", 1)[1]
    for prefix in ("FATAL:", "ERROR:"):
        if text.startswith(prefix):
            text = text[len(prefix) :].strip()
    return text


def connection_error_line(error: BaseException, url: URL) -> str:
    """One line naming why a connection to ``url`` failed, and what to do about it."""
    message = _driver_message(error)
    place = where(url)
    server = place.rsplit("/", 1)[0]
    state = _sqlstate(error)
    if state == "3D000" or (" does not exist" in message and message.startswith("database ")):
        name = url.database or ""
        return (
            f'database "{name}" does not exist on {server}: create it (createdb {name}) '
            f"or fix the URL"
        )
    unreachable = (
        "Connection refused",
        "could not translate host name",
        "timeout expired",
        "No route to host",
        "Network is unreachable",
        "No such file or directory",
        "could not connect",
    )
    if any(marker in message for marker in unreachable):
        return (
            f"cannot reach a PostgreSQL server at {server} ({message}): start the server, "
            f"or fix the host and port in the URL"
        )
    if state in ("28P01", "28000") or "authentication failed" in message or "role " in message:
        return f"cannot log in to {place} ({message}): fix the user or password in the URL"
    return f"cannot connect to {place} ({message}): check the URL and the server"


def connect(engine: sa.Engine, url: URL) -> sa.Connection:
    """``engine.connect()``, a failure turned into one line (an Alembic CommandError)."""
    from alembic.util import CommandError

    try:
        return engine.connect()
    except sa.exc.DBAPIError as error:
        raise CommandError(connection_error_line(error, url)) from error
    except ModuleNotFoundError as error:
        raise CommandError(missing_driver_line(error, url)) from error


def missing_driver_line(error: ModuleNotFoundError, url: URL) -> str:
    """The URL names a driver that is not installed."""
    return (
        f"the URL names the driver {url.get_driver_name()!r}, which is not installed "
        f"(no module {error.name!r}): install it, or write postgresql:// to use the "
        f"installed one"
    )


def configure_url(config: Any) -> str | None:
    """Set an Alembic ``config``'s ``sqlalchemy.url`` from ``DATABASE_URL`` or itself, normalised.

    For the templates' ``env.py``: ``DATABASE_URL`` overrides ``sqlalchemy.url``; a plain
    ``postgresql://`` (or ``postgres://``) URL gets the installed driver. A bad URL is an
    Alembic CommandError (Alembic prints it as one line). Returns the URL set, or None.
    """
    import os

    from alembic.util import CommandError

    text = os.environ.get("DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not text:
        return None
    try:
        rendered = url_text(engine_url(text))
    except ValueError as error:
        raise CommandError(f"sqlalchemy.url / DATABASE_URL: {error}") from None
    config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return rendered

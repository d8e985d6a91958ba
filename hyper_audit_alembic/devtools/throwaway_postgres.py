"""A throwaway PostgreSQL server for the demo, the tests and the benchmark.

Shipped with the package (not a test helper): ``python -m hyper_audit_alembic demo`` runs
on one when no ``--url`` is given.

PostgreSQL refuses to run as root, so when we are root the server runs as the
``postgres`` user (Debian's packages create it) or, failing that, ``nobody``; its
files live in a fresh temporary directory that user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PostgresNotFound

INSTALL_HINT = (
    "No PostgreSQL server binaries (initdb, pg_ctl) were found. Install PostgreSQL 15 "
    "or newer with its contrib extensions (Debian/Ubuntu: "
    "'apt-get install postgresql postgresql-contrib'), or point HYPER_AUDIT_PG_BIN at "
    "the directory that holds initdb and pg_ctl."
)

#: Settings for a server whose data may be lost: tests and the demo.
FAST_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


def find_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``, newest version first.

    ``HYPER_AUDIT_PG_BIN``, when set, is the only place looked at: falling back to
    another server would hide a wrong setting.
    """
    explicit = os.environ.get("HYPER_AUDIT_PG_BIN")
    if explicit:
        if all((Path(explicit) / exe).exists() for exe in ("initdb", "pg_ctl")):
            return Path(explicit)
        raise PostgresNotFound(
            f"HYPER_AUDIT_PG_BIN={explicit} holds no initdb and pg_ctl. {INSTALL_HINT}"
        )
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        candidates.append(found.stdout.strip())
    for directory in candidates:
        if directory and all((Path(directory) / exe).exists() for exe in ("initdb", "pg_ctl")):
            return Path(directory)
    raise PostgresNotFound(INSTALL_HINT)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_account() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' user exists")


@dataclass
class ThrowawayPostgres:
    """One PostgreSQL server in a temporary directory, removed by :meth:`stop`.

    Its attributes match what pytest-postgresql's ``postgresql_noproc(depends_on=...)``
    reads from the fixture it depends on.
    """

    settings: Mapping[str, str] = field(default_factory=lambda: dict(FAST_SETTINGS))
    host: str = "127.0.0.1"
    port: int = 0
    user: str = "postgres"
    password: str | None = None
    options: str = ""
    maintenance_dbname: str = "postgres"
    template_dbname: str | None = None
    bin_dir: Path | None = None
    base_dir: Path | None = None

    def start(self) -> ThrowawayPostgres:
        self.bin_dir = self.bin_dir or find_bin_dir()
        self.base_dir = Path(tempfile.mkdtemp(prefix="hyper_audit_pg_"))
        account = _server_account()
        if account is not None:
            os.chown(self.base_dir, account.pw_uid, account.pw_gid)
        self.port = self.port or _free_port()
        self._run(
            "initdb",
            "--pgdata",
            str(self.data_dir),
            "--username",
            self.user,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-locale",
            "--no-sync",
        )
        self._pg_ctl_start()
        return self

    def _pg_ctl_start(self) -> None:
        """Start the server with our port, socket directory and settings (again on restart:
        ``pg_ctl start`` remembers no options)."""
        assert self.base_dir is not None
        server_options = " ".join(
            f"-c {name}={value}"
            for name, value in {
                "listen_addresses": self.host,
                "port": str(self.port),
                "unix_socket_directories": str(self.base_dir),
                **self.settings,
            }.items()
        )
        self._run(
            "pg_ctl",
            "start",
            "--wait",
            "--pgdata",
            str(self.data_dir),
            "--log",
            str(self.base_dir / "server.log"),
            "-o",
            server_options,
        )

    def stop(self) -> None:
        if self.base_dir is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "--wait", "--mode", "fast", "--pgdata", str(self.data_dir))
        shutil.rmtree(self.base_dir, ignore_errors=True)
        self.base_dir = None

    def restart(self, mode: str = "fast") -> None:
        """Stop the server (``mode`` as pg_ctl's: smart, fast, immediate) and start it again."""
        assert self.base_dir is not None
        self._run("pg_ctl", "stop", "--wait", "--mode", mode, "--pgdata", str(self.data_dir))
        self._pg_ctl_start()

    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "data"

    def url(self, dbname: str = "postgres", driver: str = "psycopg2") -> str:
        return f"postgresql+{driver}://{self.user}@{self.host}:{self.port}/{dbname}"

    def psql(
        self, dbname: str, *args: str, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run psql against a database of this server, stopping at the first error."""
        psql = shutil.which("psql") or str((self.bin_dir or find_bin_dir()) / "psql")
        return subprocess.run(
            [
                psql,
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                dbname,
                *args,
            ],
            input=input,
            capture_output=True,
            text=True,
            check=False,
        )

    def _run(self, exe: str, *args: str) -> None:
        account = _server_account()
        assert self.bin_dir is not None
        done = subprocess.run(
            [str(self.bin_dir / exe), *args],
            capture_output=True,
            text=True,
            cwd=self.base_dir,
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
            env={**os.environ, "LC_ALL": "C", "LANG": "C"},
        )
        if done.returncode != 0:
            log = ""
            if self.base_dir and (self.base_dir / "server.log").exists():
                log = (self.base_dir / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"{exe} failed ({done.returncode}): {done.stderr or done.stdout}\n{log}"
            )

    def __enter__(self) -> ThrowawayPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

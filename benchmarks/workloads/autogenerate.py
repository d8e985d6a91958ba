"""`alembic revision --autogenerate` on 1,000 tables, 200 flagged: plugin on vs off.

A generated declarative model and the package's hyper_audit template environment, run in
one child process (this module, ``python -m benchmarks.workloads.autogenerate``), so the
parent's imports do not warm the measured process: the model is imported first, one
unmeasured run per database warms it up, then each revision is timed. Two databases:
empty with the audit installed, and up to date (an empty migration); the ops each run
generates are checked.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.report import fmt_ratio, fmt_seconds
from benchmarks.results import BenchmarkError, Results, log, timed
from benchmarks.server import connect, drop_database, execute, recreate_database
from benchmarks.variants import install_ours
from benchmarks.workloads import Run, Workload
from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres

ROOT = Path(__file__).resolve().parents[2]
CHILD_MODULE = "benchmarks.workloads.autogenerate"  # this module, run as the child

AUTOGEN_DB = "bench_autogenerate_empty"
AUTOGEN_CURRENT_DB = "bench_autogenerate_current"
AUTOGEN_TABLES = 1_000
AUTOGEN_FLAGGED_EVERY = 5  # every 5th table is flagged: 200 of 1,000

MODEL_SOURCE = '''"""A generated model: {tables} tables, every {every}th flagged for auditing."""

from sqlalchemy import BigInteger, DateTime, Integer, String, Text, func
from sqlalchemy.orm import DeclarativeBase, mapped_column


class Base(DeclarativeBase):
    pass


for number in range({tables}):
    name = f"t{{number:04d}}"
    # Bound to a module name, as a class statement would be: mappers are weakly referenced.
    globals()[name.upper()] = type(
        name.upper(),
        (Base,),
        {{
            "__tablename__": name,
            "__audited__": number % {every} == 0,
            "id": mapped_column(BigInteger, primary_key=True),
            "name": mapped_column(String(100), nullable=False, index=True),
            "amount": mapped_column(Integer),
            "note": mapped_column(Text),
            "created_at": mapped_column(
                DateTime(timezone=True), nullable=False, server_default=func.now()
            ),
        }},
    )
'''

ENV_PLUGINS_LITERAL = 'autogenerate_plugins=["alembic.autogenerate.*", "hyper_audit"]'
ENV_PLUGINS_REPLACEMENT = (
    "autogenerate_plugins="
    '__import__("json").loads(__import__("os").environ["BENCH_AUTOGENERATE_PLUGINS"])'
)


def plugin_lists() -> dict[str, list[str]]:
    """Plugin on: the template's list. Off: Alembic's own comparisons only.

    The package also registers a guard inside ``alembic.autogenerate.*`` that refuses
    flagged models when the plugin is off; "off" excludes it, so it measures Alembic alone.
    """
    from hyper_audit_alembic.migration.compare.guard import GUARD_PLUGIN_NAME

    off = ["alembic.autogenerate.*", "~" + GUARD_PLUGIN_NAME]
    return {"off": off, "on": ["alembic.autogenerate.*", "hyper_audit"]}


def make_autogenerate_project(workdir: Path) -> Path:
    from hyper_audit_alembic.templates import init_environment

    project = workdir / "autogenerate"
    project.mkdir()
    (project / "bench_models.py").write_text(
        MODEL_SOURCE.format(tables=AUTOGEN_TABLES, every=AUTOGEN_FLAGGED_EVERY)
    )
    with contextlib.redirect_stdout(io.StringIO()):
        init_environment(str(project / "migrations"), str(project / "alembic.ini"))
    env_py = project / "migrations" / "env.py"
    text = env_py.read_text()
    if ENV_PLUGINS_LITERAL not in text:
        raise BenchmarkError(
            f"the template's env.py no longer contains {ENV_PLUGINS_LITERAL!r}; "
            "update benchmarks/workloads/autogenerate.py"
        )
    env_py.write_text(text.replace(ENV_PLUGINS_LITERAL, ENV_PLUGINS_REPLACEMENT))
    return project


def revision_once(project: Path, url: str, plugins: list[str]) -> dict[str, Any]:
    """One `alembic revision --autogenerate` in this process: its wall time and its ops."""
    from alembic import command
    from alembic.config import Config

    os.environ["DATABASE_URL"] = url  # env.py reads both on every run
    os.environ["BENCH_AUTOGENERATE_PLUGINS"] = json.dumps(plugins)
    config = Config(str(project / "alembic.ini"))
    config.set_main_option("target_metadata", "bench_models:Base.metadata")
    with contextlib.redirect_stdout(io.StringIO()):
        started = time.perf_counter()
        script = command.revision(config, message="bench", autogenerate=True)
        elapsed = time.perf_counter() - started
    assert script is not None and not isinstance(script, list)
    path = Path(script.path)
    text = path.read_text()
    path.unlink()
    return {
        "seconds": elapsed,
        "create_table": text.count("op.create_table("),
        "enable_tracking": text.count("op.enable_tracking("),
    }


def autogenerate_child(project: Path, plan_json: str) -> None:
    """Child process: run the planned revisions, one result line (JSON) per measured run.

    The model is imported before any clock starts (as the user's env.py would import it),
    and one unmeasured run per database warms the process up first.
    """
    os.chdir(project)
    sys.path.insert(0, str(project))
    import bench_models  # type: ignore[import-not-found]  # noqa: F401

    plan = json.loads(plan_json)
    for warm_up in plan["warm_up"]:
        revision_once(project, warm_up["url"], warm_up["plugins"])
    for run in plan["runs"]:
        found = revision_once(project, run["url"], run["plugins"])
        print("BENCH_RESULT " + json.dumps({**run, **found}), flush=True)


def run_autogenerate_child(
    project: Path, warm_up: list[dict[str, Any]], runs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    plan = json.dumps({"warm_up": warm_up, "runs": runs})
    done = subprocess.run(
        [sys.executable, "-m", CHILD_MODULE, str(project), plan],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,  # `-m` puts the working directory first on sys.path: the working tree's
    )
    found = [json.loads(m) for m in re.findall(r"^BENCH_RESULT (.*)$", done.stdout, re.M)]
    if done.returncode != 0 or len(found) != len(runs):
        raise BenchmarkError(f"autogenerate failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return found


def bench_autogenerate(
    server: ThrowawayPostgres, results: Results, workdir: Path, repeat: int
) -> None:
    started = time.perf_counter()
    project = make_autogenerate_project(workdir)
    lists = plugin_lists()
    flagged = len(range(0, AUTOGEN_TABLES, AUTOGEN_FLAGGED_EVERY))

    # 1. An empty database with the audit installed: 1,000 create_table, 200 enable_tracking.
    recreate_database(server, AUTOGEN_DB)
    with contextlib.closing(connect(server, AUTOGEN_DB)) as conn:
        install_ours(conn)
    # 2. An up-to-date database: every table exists, the flagged ones tracked: no ops.
    recreate_database(server, AUTOGEN_CURRENT_DB)
    spec = importlib.util.spec_from_file_location("bench_models_setup", project / "bench_models.py")
    assert spec and spec.loader
    models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(models)
    import sqlalchemy as sa

    engine = sa.create_engine(server.url(AUTOGEN_CURRENT_DB))
    try:
        models.Base.metadata.create_all(engine, checkfirst=False)
    finally:
        engine.dispose()
    with contextlib.closing(connect(server, AUTOGEN_CURRENT_DB)) as conn:
        install_ours(conn)
        for number in range(0, AUTOGEN_TABLES, AUTOGEN_FLAGGED_EVERY):
            execute(conn, "select audit.enable_tracking(%s::regclass)", (f"public.t{number:04d}",))
        execute(conn, "vacuum analyze")
    log(f"  set-up (model, environment, two databases): {time.perf_counter() - started:.0f} s")

    expected = {
        ("autogen_empty", "off"): (AUTOGEN_TABLES, 0),
        ("autogen_empty", "on"): (AUTOGEN_TABLES, flagged),
        ("autogen_current", "off"): (0, 0),
        ("autogen_current", "on"): (0, 0),
    }
    urls = {
        "autogen_empty": server.url(AUTOGEN_DB),
        "autogen_current": server.url(AUTOGEN_CURRENT_DB),
    }
    variant_of = {"off": "untracked", "on": "ours"}
    warm_up = [{"url": url, "plugins": lists["on"]} for url in urls.values()]
    runs = []
    for rep in range(repeat):
        for key, url in urls.items():
            modes = ("off", "on") if rep % 2 == 0 else ("on", "off")
            for mode in modes:
                runs.append(
                    {"rep": rep, "key": key, "mode": mode, "url": url, "plugins": lists[mode]}
                )
    for found in run_autogenerate_child(project, warm_up, runs):
        key, mode = found["key"], found["mode"]
        want = expected[(key, mode)]
        got = (found["create_table"], found["enable_tracking"])
        if got != want:
            results.problem(
                f"autogenerate {key} plugin {mode}: {got[0]} create_table "
                f"and {got[1]} enable_tracking, expected {want}"
            )
        results.add(key, variant_of[mode], found["seconds"])
        log(
            f"  [{found['rep'] + 1}/{repeat}] autogenerate, {key.split('_')[1]} database, "
            f"plugin {mode}: {found['seconds']:.2f} s"
        )
    for dbname in (AUTOGEN_DB, AUTOGEN_CURRENT_DB):
        drop_database(server, dbname)


def measure(run: Run) -> None:
    timed(
        f"alembic revision --autogenerate, {AUTOGEN_TABLES:,} tables",
        lambda: bench_autogenerate(run.server, run.results, run.workdir, max(3, run.repeat)),
    )


def table_rows(results: Results) -> list[str]:
    """Plugin off in the untracked column, on in the ours column."""
    titles = {
        "autogen_empty": f"`alembic revision --autogenerate`, {AUTOGEN_TABLES:,} tables, "
        f"{AUTOGEN_TABLES // AUTOGEN_FLAGGED_EVERY} flagged, empty database: plugin off "
        "(untracked column) vs on (ours column)",
        "autogen_current": "the same, database up to date (no changes): plugin off vs on",
    }
    rows = []
    for key, title in titles.items():
        off, on = results.median(key, "untracked"), results.median(key, "ours")
        if off is None and on is None:
            continue
        rows.append(
            f"| {title} | off: {fmt_seconds(off)} | — | on: {fmt_seconds(on)} | — | — "
            f"| {fmt_ratio(results.ratio(key, 'ours', 'untracked'), 'time')} | — | — | — |"
        )
    return rows


WORKLOAD = Workload("autogenerate", measure, table_rows=table_rows)


if __name__ == "__main__":
    autogenerate_child(Path(sys.argv[1]), sys.argv[2])

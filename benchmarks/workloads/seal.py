"""Sealing and verifying: ``audit.seal()`` and ``audit.verify()`` in rows/s among 1,000,000
and 10,000,000 audit rows, beside the bulk audit write of the same rows.

Only ours, plain layout. audit.record_version is filled by history.fill_history (1,000
tables, 5 versions per record, in one transaction, as a bulk load writes them). Then each
repetition times, in autocommit (commit included) after a CHECKPOINT:

- the audit write of the same rows: one INSERT ... SELECT of every audit row into an empty
  copy of audit.record_version with its indexes and CHECK constraints (``like ...
  including all``), as bulk.py's "audit write alone" does for 100,000 rows: what storing
  these rows costs, the bar issue 15 sets for sealing and verifying them;
- ``audit.seal()``: the seal chain emptied first (not timed), then one call that seals
  every row; checked: one link, every row sealed;
- ``audit.verify()``: the whole chain; checked: every link 'ok', every row verified and
  none left unsealed.

The report gives rows/s and, per repetition, seal's (verify's) rows/s / the write's rows/s:
above 1.0, sealing (verifying) a history is faster than writing it. Nothing here is on the
write path; the pgbench, bulk and breakdown parts measure that.

10,000,000 rows take several minutes to fill and a few GB of disk: left out of the default
run (``--only seal``). While developing, ``HYPER_AUDIT_BENCH_SEAL_ROWS=100000,200000``
replaces the two sizes (a comma-separated list of row counts): the report's rows name the
sizes measured.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from typing import Any

from benchmarks.results import BenchmarkError, Results, log, timed
from benchmarks.server import Connection, connect, drop_database, execute, recreate_database
from benchmarks.variants import install_ours
from benchmarks.workloads import Run, Workload
from benchmarks.workloads.history import fill_history

SEAL_DB = "bench_seal"
SIZES = (1_000_000, 10_000_000)
#: Overrides SIZES (a comma-separated list of row counts) for a short run while developing.
SIZES_ENV = "HYPER_AUDIT_BENCH_SEAL_ROWS"
#: The three measurements of one size, in the order they run and are reported.
STEPS = ("write", "seal", "verify")
TITLES = {
    "write": "the audit write: one INSERT ... SELECT of the rows into an empty copy of "
    "audit.record_version (its indexes and CHECKs)",
    "seal": "`audit.seal()`: every row in one call",
    "verify": "`audit.verify()`: the whole chain",
}

WRITE_COPY = "public.record_version_copy"
SEAL = "select link_id, rows_sealed, segments from audit.seal()"
VERIFY = "select link_id, kind, status, rows_verified, detail from audit.verify()"


def sizes() -> tuple[int, ...]:
    """The audit row counts to measure: SIZES, or those HYPER_AUDIT_BENCH_SEAL_ROWS names."""
    text = os.environ.get(SIZES_ENV, "").strip()
    if not text:
        return SIZES
    try:
        found = tuple(int(part.strip().replace("_", "")) for part in text.split(","))
    except ValueError:
        found = ()
    if not found or any(rows < 1_000 for rows in found):
        raise BenchmarkError(
            f"{SIZES_ENV}={text!r}: give row counts of 1,000 or more, comma-separated "
            "(e.g. 100000,200000)"
        )
    return found


def time_statement(conn: Connection, sql: str) -> tuple[float, list[tuple[Any, ...]]]:
    """One statement after a CHECKPOINT, in autocommit (the time includes the commit)."""
    execute(conn, "checkpoint")
    with conn.cursor() as cur:
        started = time.perf_counter()
        cur.execute(sql)
        found = cur.fetchall() if cur.description is not None else []
        elapsed = time.perf_counter() - started
    return elapsed, found


def run_write(conn: Connection) -> float:
    """The audit write of every audit row, into a fresh copy of audit.record_version."""
    execute(conn, f"drop table if exists {WRITE_COPY}")
    execute(conn, f"create table {WRITE_COPY} (like audit.record_version including all)")
    elapsed, _ = time_statement(
        conn, f"insert into {WRITE_COPY} select * from audit.record_version"
    )
    execute(conn, f"drop table {WRITE_COPY}")
    return elapsed


def run_seal(conn: Connection, results: Results, rows: int) -> float:
    """One audit.seal() over every row, the chain emptied first; checked."""
    execute(conn, "truncate audit.seal_log, audit.seal_segment, audit.seal_salt")
    elapsed, found = time_statement(conn, SEAL)
    if len(found) != 1 or found[0][0] != 1 or found[0][1] != rows:
        results.problem(f"seal of {rows:,} audit rows returned {found}, not link 1 of {rows:,}")
    else:
        results.notes[f"seal_segments_{rows}"] = str(found[0][2])
    return elapsed


def run_verify(conn: Connection, results: Results, rows: int) -> float:
    """audit.verify() of the whole chain; checked: all 'ok', every row verified."""
    elapsed, found = time_statement(conn, VERIFY)
    links = [row for row in found if row[0] is not None]
    unsealed = [row for row in found if row[0] is None]
    verified = sum(int(row[3]) for row in links)
    if (
        any(row[2] != "ok" for row in found)
        or verified != rows
        or [int(row[3]) for row in unsealed] != [0]
    ):
        results.problem(f"verify of {rows:,} sealed audit rows returned {found}")
    return elapsed


def bench(run: Run, rows: int) -> None:
    results = run.results
    recreate_database(run.server, SEAL_DB)
    with contextlib.closing(connect(run.server, SEAL_DB)) as conn:
        install_ours(conn)
        started = time.perf_counter()
        fill_history(conn, rows)
        log(f"  filled {rows:,} audit rows in {time.perf_counter() - started:.1f} s")
        key = f"seal_{rows}"
        for rep in range(run.repeat):
            write = run_write(conn)
            seal = run_seal(conn, results, rows)
            verify = run_verify(conn, results, rows)
            for step, elapsed in zip(STEPS, (write, seal, verify), strict=True):
                results.add(key, step, elapsed)
            log(
                f"  [{rep + 1}/{run.repeat}] {rows:,} rows: "
                + ", ".join(
                    f"{step} {elapsed:.2f} s ({rows / elapsed:,.0f} rows/s)"
                    for step, elapsed in zip(STEPS, (write, seal, verify), strict=True)
                )
            )
    drop_database(run.server, SEAL_DB)


def measure(run: Run) -> None:
    for rows in sizes():
        timed(
            f"seal and verify among {rows:,} audit rows (plain layout)",
            functools.partial(bench, run, rows),
        )


def measured_sizes(results: Results) -> list[int]:
    """The row counts this run measured, smallest first."""
    return sorted(
        int(key.removeprefix("seal_"))
        for key, step in results.samples
        if key.startswith("seal_") and step == "write"
    )


def tables(results: Results) -> list[str]:
    found = measured_sizes(results)
    if not found:
        return []
    lines = [
        "| sealing and verifying, plain layout | audit rows | median | rows/s "
        "| rows/s / the audit write's |",
        "|---|---:|---:|---:|---:|",
    ]
    for rows in found:
        key = f"seal_{rows}"
        for step in STEPS:
            median = results.median(key, step)
            if median is None:
                continue
            # Per repetition: the write's time / this step's = this step's rows/s / the write's.
            ratio = 1.0 if step == "write" else results.ratio(key, "write", step)
            shown = "—" if ratio is None else f"{ratio:.2f}×"  # noqa: RUF001
            lines.append(
                f"| {TITLES[step]} | {rows:,} | {median:.2f} s | {rows / median:,.0f} | {shown} |"
            )
    return [*lines, ""]


def notes(results: Results) -> list[str]:
    found = measured_sizes(results)
    if not found:
        return []
    segments = ", ".join(
        f"{results.notes[f'seal_segments_{rows}']} segments for {rows:,} rows"
        for rows in found
        if f"seal_segments_{rows}" in results.notes
    )
    return [
        "Sealing and verifying: audit.record_version filled as for the history rows (1,000 "
        "tables, 5 versions per record), plain layout; each repetition writes the same rows "
        "into an empty copy of audit.record_version with its indexes and CHECKs (the audit "
        "write), seals them all in one audit.seal() call (the chain emptied first) and "
        "verifies the whole chain with audit.verify(), each in autocommit after a CHECKPOINT, "
        "commit included. The last column is the median over the repetitions of the write's "
        "time / the step's time: above 1.0 the step handles rows faster than the audit "
        f"write stores them. Segments per seal: {segments or 'not recorded'}."
    ]


WORKLOAD = Workload("seal", measure, in_default_run=False, tables=tables, notes=notes)

"""The Markdown results file: the comparison table, each part's tables and notes, the facts.

benchmarks/results.md is read by people and by the docs build (the performance tables are
generated from it), so its shape is fixed here, in one place: the headings, the columns of
the comparison table, how numbers and ratios are written. The rows themselves come from
each workload (benchmarks/workloads/), through comparison_row() for the usual ones.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from benchmarks.facts import Facts
from benchmarks.results import Results
from benchmarks.variants import VARIANTS
from benchmarks.workloads import Workload

TABLE_HEADER = [
    "| workload | untracked | reference design | ours | floor | reference / untracked "
    "| ours / untracked | floor / untracked | ours / floor | ours / reference |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
# The ratio columns of the comparison table: (variant, baseline).
RATIOS = (
    ("reference", "untracked"),
    ("ours", "untracked"),
    ("floor", "untracked"),
    ("ours", "floor"),
    ("ours", "reference"),
)

RATIOS_NOTE = (
    "Ratios: for the pgbench rows, tracked throughput / untracked throughput (1.0 = no "
    "overhead; higher is better); for the bulk statements and autogenerate, time ratios "
    "(lower is better). Ours / reference compares the two tracked variants the same way. "
    "Floor (benchmarks/floor_design.sql): for the pgbench rows, the cheapest trigger that "
    "writes the same audit rows (a bare PL/pgSQL row trigger: one INSERT per row, no "
    "lookups); for the bulk statements, no trigger at all (the change and its audit rows "
    "in one statement with a data-modifying WITH). Ours / floor near 1.0 means the rest "
    "is the cost of the audit rows themselves. "
    "Each ratio is the median of the per-repetition ratios (the variants of a repetition "
    "run back to back), so it can differ from the ratio of the medians shown."
)


def fmt_tps(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} tps"


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f} s" if value < 10 else f"{value:.2f} s"


def fmt_ratio(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    digits = 1 if value >= 10 else 2
    return f"{value:.{digits}f}× {unit}"  # noqa: RUF001


def comparison_row(
    results: Results,
    key: str,
    title: str,
    unit: str,
    columns: dict[str, str | None] | None = None,
) -> str | None:
    """One table row: the medians of the four variant columns and the ratios between them.

    `columns` says which samples fill a column (None: none, shown as a dash); by default
    each variant's own. None when no column has a sample (the part did not run).
    """
    sample = {v: v for v in VARIANTS} if columns is None else columns
    medians = [None if (s := sample[v]) is None else results.median(key, s) for v in VARIANTS]
    if all(m is None for m in medians):
        return None
    shown = fmt_tps if unit == "tps" else fmt_seconds

    def ratio(variant: str, baseline: str) -> str:
        a, b = sample[variant], sample[baseline]
        return fmt_ratio(None if a is None or b is None else results.ratio(key, a, b), unit)

    return (
        f"| {title} | "
        + " | ".join(shown(m) for m in medians)
        + " | "
        + " | ".join(ratio(a, b) for a, b in RATIOS)
        + " |"
    )


def summary_line(facts: Facts) -> str:
    """The machine and server on one line, for the head of the report."""
    known = dict(facts)
    server = re.sub(r"^PostgreSQL (\S+).*$", r"PostgreSQL \1", known.get("server", "?"))
    return (
        f"Machine: {known.get('CPU', '?')}, {known.get('memory', '?')} memory; {server}, "
        + ", ".join(
            f"{name} {known[name]}"
            for name in ("shared_buffers", "fsync", "synchronous_commit", "full_page_writes")
            if name in known
        )
        + f"; 1-minute load average {known.get('1-minute load average at start', '?')} at start, "
        f"{known.get('1-minute load average at end', '?')} at end."
    )


def build_report(
    results: Results,
    workloads: Sequence[Workload],
    command_line: str,
    facts: Facts,
    repeat: int,
    duration: int,
    elapsed: float,
) -> str:
    """The whole results file: every workload's rows, tables and notes, in their order."""
    lines = [
        "# Benchmark results",
        "",
        f"Command: `{command_line}` — {repeat} repetition(s), variants interleaved, "
        f"medians; pgbench runs of {duration} s; total run time {elapsed / 60:.1f} "
        f"min; {time.strftime('%Y-%m-%d %H:%M %Z')}.",
        "",
        summary_line(facts),
        "",
    ]
    # A run of parts with tables of their own only (growth) has no comparison table.
    rows = [row for workload in workloads for row in workload.table_rows(results)]
    if rows:
        lines += [*TABLE_HEADER, *rows, ""]
    lines += [line for workload in workloads for line in workload.tables(results)]
    if rows:
        lines.append(RATIOS_NOTE)
    elif lines[-1] == "":
        lines.pop()
    for workload in workloads:
        for paragraph in workload.notes(results):
            lines += ["", paragraph]
    lines += ["", "## Machine and server", ""]
    lines += [f"- {name}: {value}" for name, value in facts]
    if results.problems:
        lines += ["", "## Problems found during the run", ""]
        lines += [f"- {problem}" for problem in results.problems]
    lines += ["", "## All samples", ""]
    for (key, variant), values in results.samples.items():
        shown = ", ".join(f"{v:,.4g}" for v in values)
        lines.append(f"- {key} / {variant}: {shown}")
    return "\n".join(lines) + "\n"

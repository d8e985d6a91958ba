"""The command line and the order of a run: options, the parts, the server, the report.

One entry point, whichever way it is started (``python benchmarks/run.py`` as the
project's brief names it, or ``python -m benchmarks``): parse the options, start the
throwaway server, set up the variants' databases if a chosen part needs them, run the
chosen parts in WORKLOADS' order, write the report. A new part is one module under
workloads/ and one entry in WORKLOADS (its name becomes a choice of --only).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.facts import load_average, machine_facts, server_facts, software_facts
from benchmarks.report import build_report
from benchmarks.results import BenchmarkError, Results, log
from benchmarks.server import benchmark_server
from benchmarks.variants import DATABASES, setup_variants
from benchmarks.workloads import (
    Run,
    Workload,
    autogenerate,
    breakdown,
    bulk,
    column_history,
    growth,
    history,
    indexes,
    pgbench,
    seal,
    snapshot,
)

RESULTS_MD = Path(__file__).resolve().parent / "results.md"
#: The growth part's own results file: `--only growth` alone writes it (not results.md,
#: whose every table the performance page places), docs/layouts-and-scaling.md shows it.
RESULTS_GROWTH_MD = RESULTS_MD.with_name("results-growth.md")
#: The parts of the growth study: run alone (one or both), they write RESULTS_GROWTH_MD.
GROWTH_PARTS = frozenset({"growth", "indexes"})

#: Every part, in the order it runs and its rows appear in the report.
WORKLOADS: tuple[Workload, ...] = (
    pgbench.WORKLOAD,
    bulk.WORKLOAD,
    breakdown.WORKLOAD,
    history.WORKLOAD,
    autogenerate.WORKLOAD,
    snapshot.WORKLOAD,
    column_history.WORKLOAD,
    column_history.WORKLOAD_10M,
    seal.WORKLOAD,
    growth.WORKLOAD,
    indexes.WORKLOAD,
)


def growth_sizes(text: str) -> tuple[int, ...]:
    """--growth-rows: ``0,2M,10M,50M`` as row counts (argparse reports a bad one)."""
    try:
        return growth.parse_sizes(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def default_parts() -> str:
    left_out = [w.name for w in WORKLOADS if not w.in_default_run]
    return "all" if not left_out else "all but " + ", ".join(left_out)


def parse_args(argv: list[str], prog: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Write overhead of the audit trail: untracked vs reference design vs ours.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a short run: 1 repetition, 3 s pgbench runs"
    )
    parser.add_argument(
        "--repeat", type=int, help="repetitions of each measurement (default 3, 1 with --quick)"
    )
    parser.add_argument(
        "--duration", type=int, help="seconds per pgbench run (default 5, 3 with --quick)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=[workload.name for workload in WORKLOADS],
        help=f"run only these parts (repeatable); default: {default_parts()}",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"where the Markdown report goes (default {RESULTS_MD.name}; "
        f"{RESULTS_GROWTH_MD.name} for --only growth / --only indexes alone)",
    )
    parser.add_argument(
        "--growth-rows",
        type=growth_sizes,
        metavar="ROWS,ROWS,...",
        help="growth part: the history sizes, in audit rows, k and M suffixes allowed "
        "(default 0,2M,10M)",
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="growth part: also measure the audit SQL of this git commit (e.g. 73c1095), "
        "side by side with the working tree's (about twice the run time)",
    )
    options = parser.parse_args(argv)
    growth_alone = bool(options.only) and set(options.only) <= GROWTH_PARTS
    if options.output is None:
        if options.only and GROWTH_PARTS & set(options.only) and not growth_alone:
            parser.error(
                f"the growth part writes its own results file ({RESULTS_GROWTH_MD.name}): "
                "run it alone (--only growth, --only indexes) or give --output"
            )
        options.output = RESULTS_GROWTH_MD if growth_alone else RESULTS_MD
    if (options.growth_rows is not None or options.baseline) and not (
        options.only and "growth" in options.only
    ):
        parser.error(
            "--growth-rows and --baseline are options of the growth part: add --only growth"
        )
    if options.repeat is None:
        options.repeat = 1 if options.quick else 3
    if options.duration is None:
        options.duration = 3 if options.quick else 5
    if options.repeat < 1 or options.duration < 1:
        parser.error("--repeat and --duration must be at least 1")
    return options


def chosen(options: argparse.Namespace) -> list[Workload]:
    """The parts to run, in WORKLOADS' order: --only's, or those of the default run."""
    if options.only:
        return [w for w in WORKLOADS if w.name in options.only]
    return [w for w in WORKLOADS if w.in_default_run]


def measure(options: argparse.Namespace, command_line: str) -> tuple[str, Results]:
    """Run the chosen parts on a throwaway server: the report, and the results behind it."""
    workloads = chosen(options)
    started = time.perf_counter()
    results = Results()
    workdir = Path(tempfile.mkdtemp(prefix="hyper_audit_bench_"))
    server = benchmark_server()
    try:
        log("starting a throwaway PostgreSQL (default durability) ...")
        server.start()
        facts = machine_facts() + server_facts(server) + software_facts()
        for name, value in facts:
            log(f"  {name}: {value}")
        run = Run(server, results, workdir, options.repeat, options.duration, options=options)
        try:
            if any(w.needs_variants for w in workloads):
                run.conns = setup_variants(server)
                log(f"  databases: {', '.join(DATABASES.values())}")
            for index, workload in enumerate(workloads):
                workload.measure(run)
                if run.conns and not any(w.needs_variants for w in workloads[index + 1 :]):
                    for conn in run.conns.values():  # no later part needs them
                        conn.close()
                    run.conns = {}
        finally:
            for conn in run.conns.values():
                conn.close()
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    elapsed = time.perf_counter() - started
    facts += load_average("end")
    report = build_report(
        results, workloads, command_line, facts, options.repeat, options.duration, elapsed
    )
    return report, results


def main(argv: list[str], program: str | None = None) -> int:
    """Run the benchmark; the exit status is 1 if a sanity check failed, 2 if set-up did.

    `program` is how it was started, for usage and the report's command line.
    """
    options = parse_args(argv, program)
    started_as = program or "python benchmarks/run.py"
    command_line = started_as + "".join(" " + shlex.quote(a) for a in argv)
    try:
        report, results = measure(options, command_line)
    except BenchmarkError as failure:
        print(f"benchmark failed: {failure}", file=sys.stderr)
        return 2
    options.output.write_text(report)
    log("\n" + report)
    log(f"(written to {options.output})")
    return 1 if results.problems else 0

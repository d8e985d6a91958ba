"""The benchmark: what the audit trail costs, measured against a real PostgreSQL.

A package so that each file holds one job and tests import what they check by name
(tests/test_benchmark_floor.py imports the floor's statements from here, not a file path).
Run it with ``python benchmarks/run.py`` (or ``python -m benchmarks``); benchmarks/README.md
says what each row measures and which module owns what:

- ``cli``: the command line and the order of a run;
- ``server``: the throwaway server with the benchmark's settings, and talking to it;
- ``facts``: the machine, server and package facts printed with every result;
- ``variants``: the four databases (untracked, reference design, ours, floor);
- ``workloads/``: one module per part (pgbench, bulk, breakdown, history, autogenerate),
  each measuring and rendering its own rows;
- ``results``: the samples a run collects, its problems, its console log;
- ``report``: ratios, formats and the Markdown results file.
"""

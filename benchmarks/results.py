"""What a run collects: samples per (measurement, variant), problems, notes; and its log.

Every workload adds its samples here and reads them back when it renders its rows, so
the ratios of a report always come from one run's own repetitions.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class BenchmarkError(RuntimeError):
    """Something in the set-up failed: the run cannot produce meaningful numbers."""


def log(text: str) -> None:
    print(text, flush=True)


def timed(title: str, part: Callable[[], None]) -> None:
    """Run one part of the benchmark under a heading, then say how long it took."""
    log(f"\n== {title}")
    started = time.perf_counter()
    part()
    log(f"   ({time.perf_counter() - started:.0f} s)")


@dataclass
class Results:
    samples: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, variant: str, value: float) -> None:
        self.samples.setdefault((key, variant), []).append(value)

    def median(self, key: str, variant: str) -> float | None:
        values = self.samples.get((key, variant))
        return statistics.median(values) if values else None

    def ratio(self, key: str, variant: str, baseline: str) -> float | None:
        """The median over the repetitions of variant / baseline within each repetition.

        The runs of one repetition ran back to back, so a stall of a shared machine skews
        one repetition's ratio instead of one variant's median.
        """
        values = self.samples.get((key, variant))
        bases = self.samples.get((key, baseline))
        if not values or not bases or len(values) != len(bases):
            return None
        pairs = [v / b for v, b in zip(values, bases, strict=True) if b]
        return statistics.median(pairs) if pairs else None

    def problem(self, text: str) -> None:
        self.problems.append(text)
        log(f"  !! {text}")

"""What a benchmark hands back, and the markdown it becomes (printed and in BENCHMARKS.md)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Row:
    """One measured quantity against its target; ``met`` is None where there is no target."""

    metric: str
    measured: str
    target: str = ""
    met: bool | None = None


@dataclass
class Result:
    name: str
    what: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: What stands between the measurement and its target, shown when a target is missed.
    limits: str = ""

    def add(self, metric: str, measured: str, target: str = "", met: bool | None = None) -> None:
        self.rows.append(Row(metric, measured, target, met))

    def note(self, text: str) -> None:
        self.notes.append(text)

    @property
    def met(self) -> bool | None:
        verdicts = [row.met for row in self.rows if row.met is not None]
        return None if not verdicts else all(verdicts)


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def mb(size: float) -> str:
    return f"{size / 2**20:.1f} MiB"


def verdict(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: ""}[met]


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def summary(results: Sequence[Result]) -> str:
    """One line per measured quantity, all benchmarks together."""
    rows = [
        (result.name, row.metric, row.measured, row.target, verdict(row.met))
        for result in results
        for row in result.rows
    ]
    return table(("benchmark", "metric", "measured", "target", ""), rows)


def details(result: Result) -> str:
    parts = [f"### {result.name}", "", result.what, ""]
    parts += [f"- {note}" for note in result.notes]
    parts.append(f"- took {result.seconds:.0f} s")
    if result.met is False and result.limits:
        parts += ["", f"What limits it: {result.limits}"]
    return "\n".join(parts)

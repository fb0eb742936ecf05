"""Summarise a py-spy ``raw`` (folded stacks) profile: the functions with the most own time and
the most total time, and the share of each component (``bench.profile.COMPONENTS``).

    python -m bench.flame PROFILE.txt [--top 25]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

from bench.profile import breakdown

_LINE = re.compile(r":\d+\)$")


def function(frame: str) -> str:
    """``name (path/to/module.py:12)`` -> ``name (path/to/module.py)``, the path shortened to its
    package-relative part."""
    frame = _LINE.sub(")", frame.strip())
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in frame:
            name, _, path = frame.partition(" (")
            return f"{name} ({path.rsplit(marker, 1)[1]}"
    return frame


def tops(raw: Path) -> tuple[Counter[str], Counter[str], int]:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or not stack:
            continue
        n = int(count)
        samples += n
        frames = [function(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for name in set(frames):
            total[name] += n
    return own, total, samples


def report(raw: Path, top: int = 25) -> str:
    own, total, samples = tops(raw)
    if not samples:
        return f"{raw}: no samples"
    lines = [f"{samples} samples ({raw.name})", "", "own time:"]
    lines += [f"  {100 * n / samples:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "total time (the function and what it calls):"]
    lines += [f"  {100 * n / samples:5.1f}%  {name}" for name, n in total.most_common(top)]
    lines += ["", "by component:"]
    parts = breakdown(raw)
    lines += [f"  {100 * n / samples:5.1f}%  {name}" for name, n in parts.most_common()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(report(args.raw, args.top))


if __name__ == "__main__":
    main()

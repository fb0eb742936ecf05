"""Turn one ``compare.sh`` run into the markdown table of the peer comparison.

    python table.py RAW [--markdown FILE] [--benchmarks BENCHMARKS.md]

RAW is the ``compare-<ts>.txt`` file: ``RESULT``/``PROCMON`` lines tagged ``GW=<gateway>``.
The table goes to stdout, to ``--markdown`` and, between the ``peer`` markers, into
``--benchmarks``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

START = "<!-- peer:start -->"
END = "<!-- peer:end -->"
GATEWAYS = (
    ("litellm", "LiteLLM proxy"),
    ("imagegen-passthrough", "imagegen, provider URLs passed through"),
    ("imagegen-stored", "imagegen, images stored"),
)


def fields(line: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", line))


class Run:
    def __init__(self, text: str) -> None:
        self.results: dict[tuple[str, str], dict[str, str]] = {}
        self.procmon: dict[str, list[dict[str, str]]] = {}
        self.idle: dict[str, dict[str, str]] = {}
        self.loads: list[str] = []
        self.workers: dict[str, str] = {}
        self.start = self.end = ""
        self.fake_pid = ""
        self.litellm = ""
        for line in text.splitlines():
            if line.startswith("START "):
                self.start = line.split()[1]
                self.loads.append("start " + line.split("load=")[1].split(" litellm")[0])
                self.litellm = line.rsplit("litellm=", 1)[1]
            elif line.startswith("END "):
                self.end = line.split()[1]
                self.loads.append("end " + line.split("load=")[1])
            elif line.startswith("FAKEPID "):
                self.fake_pid = line.split()[1]
            elif line.startswith("GW="):
                gw, _, rest = line.partition(" ")
                gw = gw.removeprefix("GW=")
                self._gateway_line(gw, rest)

    def _gateway_line(self, gw: str, rest: str) -> None:
        if rest.startswith("WORKERS "):
            self.workers[gw] = rest.split()[1]
        elif rest.startswith("RESULT "):
            f = fields(rest)
            label = re.sub(r"-r\d+$", "", f.get("label", ""))
            if label.startswith("direct-"):
                self.results[("direct@" + gw, label.removeprefix("direct-"))] = f
            else:
                self.results[(gw, label.removeprefix(gw + "-"))] = f
        elif rest.startswith("# suite"):
            load = f"{gw} {rest.split('load=')[1]}"
            if load not in self.loads:
                self.loads.append(load)
        elif "gw-idle" in rest:
            self.idle[gw] = fields(rest[rest.index("PROCMON") :])
        elif rest.startswith("PROCMON ") and f"label=pid{self.fake_pid} " not in rest + " ":
            self.procmon.setdefault(gw, []).append(fields(rest))

    def get(self, gw: str, case: str) -> dict[str, str] | None:
        """``case``: ``low`` (upstream instant, one connection), ``fast`` (upstream instant,
        many), ``slow`` (upstream delayed)."""
        for (name, label), found in self.results.items():
            match = re.fullmatch(r"(\d+)ms-c(\d+)", label)
            if name != gw or match is None:
                continue
            delay, conc = int(match[1]), int(match[2])
            kind = "slow" if delay else "low" if conc == 1 else "fast"
            if kind == case:
                return found
        return None

    def conc(self, case: str) -> str:
        for gw, _ in GATEWAYS:
            found = self.get(gw, case)
            if found is not None:
                return f"{int(found.get('conc', '0')):,}"
        return "?"


def _num(f: dict[str, str] | None, key: str) -> float | None:
    try:
        return float(f[key]) if f is not None else None
    except (KeyError, ValueError):
        return None


def _fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def render(run: Run, raw: Path) -> str:
    gws = [g for g, _ in GATEWAYS if any(k[0] == g for k in run.results)]
    names = dict(GATEWAYS)
    head = "| case | " + " | ".join(names[g] for g in gws) + " | fake upstream, direct |"
    rows = [head, "|---" * (len(gws) + 2) + "|"]

    def row(title: str, case: str, cell: object) -> None:
        cells = [cell(run.get(g, case), run.get("direct@" + g, case)) for g in gws]  # type: ignore[operator]
        direct = next(
            (run.get("direct@" + g, case) for g in gws if run.get("direct@" + g, case)), None
        )
        rows.append(f"| {title} | " + " | ".join(cells) + f" | {cell(direct, None)} |")  # type: ignore[operator]

    def c1(f: dict[str, str] | None, d: dict[str, str] | None) -> str:
        if f is None:
            return "-"
        text = f"{_fmt(_num(f, 'rps_ok'))}, {_fmt(_num(f, 'p50_ms'), ' ms', 2)}"
        gw_p50, direct_p50 = _num(f, "p50_ms"), _num(d, "p50_ms")
        if d is not None and gw_p50 is not None and direct_p50 is not None:
            text += f" (adds {gw_p50 - direct_p50:.2f} ms)"
        return text

    def c64(f: dict[str, str] | None, d: dict[str, str] | None) -> str:
        if f is None:
            return "-"
        return (
            f"{_fmt(_num(f, 'rps_ok'))}, {_fmt(_num(f, 'p50_ms'), ' ms')}, "
            f"{_fmt(_num(f, 'p99_ms'), ' ms')}"
        )

    def slow(f: dict[str, str] | None, d: dict[str, str] | None) -> str:
        if f is None:
            return "-"
        p99 = _num(f, "p99_ms")
        return (
            f"{_fmt(_num(f, 'rps_ok'))}, {_fmt(_num(f, 'success_pct'), ' %')}, "
            f"{_fmt(None if p99 is None else p99 / 1000, ' s', 2)}"
        )

    row("1 connection: req/s, p50", "low", c1)
    row(f"{run.conc('fast')} connections, upstream instant: req/s, p50, p99", "fast", c64)
    row(f"{run.conc('slow')} connections, upstream 1 s: ok/s, success, p99", "slow", slow)
    mem = []
    for g in gws:
        idle = _num(run.idle.get(g), "rss_mb_start")
        peak = max((_num(p, "rss_mb_peak") or 0.0 for p in run.procmon.get(g, [])), default=None)
        mem.append(f"{_fmt(idle, ' MB', 0)} idle, {_fmt(peak, ' MB', 0)} peak")
    rows.append("| memory (RSS, process tree) | " + " | ".join(mem) + " | |")
    rows.append(
        "| processes | " + " | ".join(f"{run.workers.get(g, '?')} worker(s)" for g in gws) + " | |"
    )
    ratio = ""
    lite, through = run.get("litellm", "fast"), run.get("imagegen-passthrough", "fast")
    a, b = _num(through, "rps_ok"), _num(lite, "rps_ok")
    if a and b:
        ratio = (
            f"\n\nAt {run.conc('fast')} connections, imagegen passing provider URLs through serves "
            f"{a / b:.2f}x LiteLLM's req/s in this run."
        )
    return (
        f"Peer comparison, one run {run.start} .. {run.end} (`make bench-peer`; "
        f"LiteLLM {run.litellm}, "
        f"wrk closed loop, the same fake OpenAI-compatible upstream; raw lines `{raw.name}`). "
        f"Load average (1, 5, 15 min): {'; '.join(run.loads)}. The machine is shared: compare the "
        "columns of this one run, not runs with each other.\n\n" + "\n".join(rows) + ratio
    )


def summary(run: Run) -> dict[str, object]:
    """What ``python -m bench --only targets`` reads back (``bench/results/peer-latest.json``)."""
    lite, through = run.get("litellm", "fast"), run.get("imagegen-passthrough", "fast")
    a, b = _num(through, "rps_ok"), _num(lite, "rps_ok")
    slow: dict[str, dict[str, object]] = {}
    for gw, _ in GATEWAYS:
        found = run.get(gw, "slow")
        if found is not None:
            slow[gw] = {
                "rps_ok": _num(found, "rps_ok"),
                "success_pct": _num(found, "success_pct"),
                "p99_ms": _num(found, "p99_ms"),
                "conc": found.get("conc"),
                "workers": run.workers.get(gw, "?"),
            }
    return {
        "start": run.start,
        "loads": "; ".join(run.loads),
        "ratio_fast": a / b if a and b else None,
        "slow": slow,
    }


def splice(path: Path, table: str) -> None:
    block = f"{START}\n## Peer comparison\n\n{table}\n{END}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if START in text and END in text:
        before, _, rest = text.partition(START)
        _, _, after = rest.partition(END)
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--benchmarks", type=Path)
    parser.add_argument("--json", type=Path, help="the numbers the targets benchmark reads")
    args = parser.parse_args()
    run = Run(args.raw.read_text())
    table = render(run, args.raw)
    if args.json:
        args.json.write_text(json.dumps(summary(run), indent=1) + "\n")
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    if args.benchmarks:
        splice(args.benchmarks, table)


if __name__ == "__main__":
    main()

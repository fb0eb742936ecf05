"""How the command line prints generations: the history as a table, one generation in full."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

STATE_STYLES = {"succeeded": "green", "failed": "red", "canceled": "dim", "running": "cyan"}


def _when(value: str | None) -> str:
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return value


def took(job: dict[str, Any]) -> str:
    if not job.get("completed_at"):
        return ""
    seconds = (
        datetime.fromisoformat(job["completed_at"]) - datetime.fromisoformat(job["created_at"])
    ).total_seconds()
    return f"{seconds:.1f}s"


def cost(value: Any) -> str | None:
    """A cost as the API gives it: a number (US dollars), or an object with an amount."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return f"${value:.4f}"
    if isinstance(value, dict) and isinstance(value.get("amount"), int | float):
        return f"{value['amount']} {value.get('currency', 'USD')}"
    return json.dumps(value) if not isinstance(value, str) else value


def _state(status: str) -> Text:
    return Text(status, style=STATE_STYLES.get(status, "yellow"))


def history_table(page: dict[str, Any]) -> Table:
    table = Table(title="imagegen history, newest first", title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("created", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("model", overflow="fold")
    table.add_column("images", justify="right", no_wrap=True)
    table.add_column("took", justify="right", no_wrap=True)
    table.add_column("prompt / error", overflow="fold")
    for job in page["data"]:
        prompt = job["prompt"] if len(job["prompt"]) <= 60 else job["prompt"][:59] + "…"
        text = Text(prompt)
        if job.get("error"):
            text.append(f"\n{job['error']}", style="red")
        table.add_row(
            job["id"],
            _when(job["created_at"]),
            _state(job["status"]),
            Text(job["model"]),
            f"{len(job['images'])}/{job['num_images']}",
            took(job),
            text,
        )
    return table


def print_generation(console: Console, job: dict[str, Any]) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    error = job.get("error")
    rows: list[tuple[str, str | Text | None]] = [
        ("id", job["id"]),
        ("state", _state(job["status"])),
        ("model", f"{job['model']} ({job['provider']})"),
        ("prompt", job["prompt"]),
        ("asked for", f"{job['num_images']} x {job['width']}x{job['height']}"),
        ("created", _when(job["created_at"])),
        ("took", took(job) or None),
        ("progress", None if job.get("progress") is None else f"{job['progress']:.0%}"),
        ("cost", cost(job.get("cost"))),
        ("error", Text(f"{job['error_code']}: {error}", style="red") if error else None),
    ]
    for name, value in rows:
        if value:
            grid.add_row(name, Text(value) if isinstance(value, str) else value)
    for n, image in enumerate(job["images"]):
        grid.add_row(f"image {n + 1}", Text(image["url"]))
    console.print(grid, highlight=False)
    for prediction in job["predictions"]:
        console.print(Text(f"\ninputs of prediction {prediction['id']}", style="bold"))
        console.print_json(json.dumps(prediction["inputs"]))

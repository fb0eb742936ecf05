"""``imagegen keys list`` as a plain-text table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from imagegen.auth.keys import ApiKey
from imagegen.key_admin import KeyReport
from imagegen.usage import UsageRow

HEADER = ("NAME", "PREFIX", "LIMITS", "CREATED", "LAST USED", "TODAY", "THIS MONTH")


def limits_text(key: ApiKey) -> str:
    limits = key.limits
    parts = [
        f"{label} {value}"
        for label, value in (
            ("rpm", limits.rpm),
            ("concurrent", limits.max_concurrent),
            ("images/day", limits.images_per_day),
        )
        if value is not None
    ]
    if limits.models is not None:
        parts.append("models " + ",".join(limits.models))
    text = ", ".join(parts) or "no limits"
    return ("admin, " + text) if key.admin else text


def _when(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M}Z"


def _spent(row: UsageRow | None) -> str:
    if row is None:
        return "0 images $0"
    text = f"{row.images} images ${row.cost:.4f}"
    return text + (f" (+{row.unpriced} unpriced)" if row.unpriced else "")


def render(reports: Sequence[KeyReport]) -> str:
    if not reports:
        return "no keys (create one: imagegen keys create NAME --admin)"
    rows = [HEADER]
    for report in reports:
        key = report.key
        name = key.name + (" (revoked)" if key.revoked else "")
        rows.append(
            (
                name,
                key.prefix,
                limits_text(key),
                _when(key.created_at),
                _when(key.last_used_at),
                _spent(report.today),
                _spent(report.month),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )

"""The HTTP client behind ``imagegen generate``: sends one request, shows progress, saves images."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}


class GenerateFailed(Exception):
    """The server refused or failed the generation; ``exit_code`` follows the error's class."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def run_generate(
    *, base_url: str, body: dict[str, Any], output: Path, timeout: float
) -> list[Path]:
    console = Console(stderr=True)
    output.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with (
        httpx.Client(
            base_url=base_url.rstrip("/"), timeout=httpx.Timeout(timeout, connect=5)
        ) as client,
        console.status("[bold]generating...", spinner="dots") as status,
    ):
        try:
            response = client.post("/api/v1/images/generate", json=body)
        except httpx.HTTPError as exc:
            raise GenerateFailed(f"could not reach {base_url}: {exc}") from exc
        status.update(f"saving images ({time.monotonic() - started:.1f}s)")
        payload = _payload(response)
        paths = [
            _save(client, image_url, output, payload.get("id", "image"), index)
            for index, image_url in enumerate(payload["image_urls"])
        ]
    console.print(f"[green]{len(paths)} image(s) in {time.monotonic() - started:.1f}s")
    if payload.get("images_missing"):
        console.print(f"[yellow]{payload['images_missing']} image(s) were not returned")
    return paths


def _payload(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        payload = {}
    if response.status_code >= 400:
        message = payload.get("error") if isinstance(payload, dict) else None
        code = 2 if 400 <= response.status_code < 500 else 1
        raise GenerateFailed(
            f"HTTP {response.status_code}: {message or response.text[:200]}", exit_code=code
        )
    if not isinstance(payload, dict) or "image_urls" not in payload:
        raise GenerateFailed("the server sent an unexpected reply")
    return payload


def _save(client: httpx.Client, url: str, output: Path, stem: str, index: int) -> Path:
    try:
        response = client.get(url)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise GenerateFailed(f"could not download {url}: {exc}") from exc
    content_type = response.headers.get("content-type", "").split(";")[0]
    path = output / f"{stem}-{index}{EXTENSIONS.get(content_type, '.img')}"
    path.write_bytes(response.content)
    return path

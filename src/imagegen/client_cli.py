"""What ``imagegen generate`` does against a running imagegen: create an async job, follow its
events with a live display, save the images, and cancel the job upstream on Ctrl-C."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from imagegen.client_http import ApiClient, ClientError
from imagegen.client_progress import JobProgress

EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}
EXIT_INTERRUPTED = 130  # what a shell reports for a command ended by SIGINT
MAX_RECONNECTS = 5


def run_generate(
    api: ApiClient, body: dict[str, Any], output: Path, *, detach: bool, console: Console
) -> list[str]:
    """The job's id (``detach``), else the paths of its saved images.

    Raises ``ClientError``: refused, failed or canceled; ``exit_code`` 130 after Ctrl-C.
    """
    job = api.create(body)
    if detach:
        return [str(job["id"])]
    console.print(f"generation {job['id']}", highlight=False)
    try:
        with JobProgress(console, job["id"]) as display:
            display.update(job["status"], job.get("progress"))
            final = follow(api, job["id"], display)
            elapsed = display.elapsed()
    except KeyboardInterrupt:
        raise cancel_after_interrupt(api, job["id"], console) from None
    if final["status"] != "succeeded":
        reason = final.get("error") or f"it was {final['status']}"
        raise ClientError(f"generation {final['id']} {final['status']}: {reason}")
    output.mkdir(parents=True, exist_ok=True)
    paths = [save(api, image, output, final["id"], n) for n, image in enumerate(final["images"])]
    console.print(f"[green]{len(paths)} image(s) in {elapsed:.1f}s", highlight=False)
    if final.get("images_missing"):
        console.print(f"[yellow]{final['images_missing']} image(s) were not returned")
    return [str(path) for path in paths]


def follow(api: ApiClient, generation_id: str, display: JobProgress) -> dict[str, Any]:
    """Shows each event until ``done``; the job in its final state. A dropped stream is
    reopened (its first event is the job as it is now, so nothing is missed)."""
    state, fraction, drops = "queued", None, 0
    while True:
        try:
            for event in api.events(generation_id):
                if event.kind == "progress":
                    fraction = event.data.get("progress")
                else:
                    state = str(event.data["status"])
                    fraction = event.data.get("progress", fraction)
                display.update(state, fraction)
                if event.kind == "done":
                    return event.data
        except httpx.TransportError as exc:
            if drops >= MAX_RECONNECTS:
                raise ClientError(f"lost the event stream of {generation_id}: {exc}") from exc
        if drops >= MAX_RECONNECTS:
            raise ClientError(f"the event stream of {generation_id} kept closing")
        drops += 1
        time.sleep(1)


def cancel_after_interrupt(api: ApiClient, generation_id: str, console: Console) -> ClientError:
    """Ctrl-C: cancel the job (and its predictions upstream) before exiting."""
    console.print(f"interrupted: canceling {generation_id}", highlight=False)
    try:
        job = api.cancel(generation_id)
    except ClientError as exc:
        return ClientError(f"interrupted; the cancel failed: {exc}", exit_code=EXIT_INTERRUPTED)
    return ClientError(
        f"interrupted: generation {generation_id} is {job['status']}", exit_code=EXIT_INTERRUPTED
    )


def save(api: ApiClient, image: dict[str, Any], output: Path, stem: str, index: int) -> Path:
    content = api.download(image["url"])
    extension = EXTENSIONS.get(str(image.get("content_type")), Path(image["url"]).suffix or ".img")
    path = output / f"{stem}-{index}{extension}"
    path.write_bytes(content)
    return path

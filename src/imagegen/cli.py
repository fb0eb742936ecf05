"""The command line: ``imagegen serve``, ``imagegen generate`` and ``imagegen keys ...``. A thin
edge over the core.

Start-up time counts (``imagegen serve`` should answer within a second), so each command imports
what it needs when it runs: ``generate`` never loads the server, ``serve`` never loads the
client's progress display.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    from imagegen.config import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="imagegen: image generation API")
keys_app = typer.Typer(no_args_is_help=True, help="API keys: create, list, revoke.")
app.add_typer(keys_app, name="keys")

T = TypeVar("T")
EXIT_USAGE = 2
EXIT_FAILED = 1


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment and .env; a bad setting exits naming it."""
    from pydantic import ValidationError

    from imagegen.config import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        for problem in exc.errors():
            name = ".".join(str(part) for part in problem["loc"]) or "settings"
            env = name if name.isupper() else f"IMAGEGEN_{name.upper()}"
            typer.echo(f"imagegen: invalid setting {env}: {problem['msg']}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


def check_catalog(settings: Settings) -> None:
    """A bad catalog file stops start-up with a message naming the file and each key."""
    from imagegen.catalog_file import load_catalog_file
    from imagegen.errors import ConfigurationError

    try:
        load_catalog_file(settings.catalog_path, settings)
    except ConfigurationError as exc:
        typer.echo(f"imagegen: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


def check_exposure(settings: Settings) -> None:
    """Bound to a non-loopback address with no API key: one line, and exit."""
    import asyncio

    from imagegen.key_admin import exposure_problem

    problem = asyncio.run(exposure_problem(settings))
    if problem is not None:
        typer.echo(f"imagegen: {problem}", err=True)
        raise typer.Exit(EXIT_USAGE)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default 8000).")] = None,
) -> None:
    """Serve the imagegen API."""
    import uvicorn

    from imagegen.api.app import create_app
    from imagegen.logs import configure_logging

    settings = load_settings(host=host, port=port)
    check_catalog(settings)
    check_exposure(settings)
    configure_logging(settings.log_level, settings.log_format)
    application = create_app(settings)
    uvicorn.run(
        application,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # JSON logs: uvicorn's own loggers go through imagegen's handler, not uvicorn's format.
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
        access_log=False,
        ws="none",  # no websocket routes: don't import a websocket implementation at start-up
        timeout_graceful_shutdown=5,
    )


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
    model: Annotated[str, typer.Option("--model", "-m", help="owner/name[:version] or alias.")] = (
        "black-forest-labs/flux-schnell"
    ),
    num_images: Annotated[int, typer.Option("--num-images", "-n", help="How many images.")] = 1,
    width: Annotated[int, typer.Option(help="Width in pixels.")] = 1024,
    height: Annotated[int, typer.Option(help="Height in pixels.")] = 1024,
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for the images.")] = (
        Path(".")
    ),
    url: Annotated[str, typer.Option(help="Base URL of a running imagegen.")] = (
        "http://127.0.0.1:8000"
    ),
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server.")] = 600.0,
) -> None:
    """Ask a running imagegen for images, save them, and print their paths."""
    from imagegen.client_cli import GenerateFailed, run_generate

    try:
        paths = run_generate(
            base_url=url,
            body={
                "model": model,
                "prompt": prompt,
                "num_images": num_images,
                "width": width,
                "height": height,
            },
            output=output,
            timeout=timeout,
        )
    except GenerateFailed as exc:
        typer.echo(f"imagegen: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    for path in paths:
        typer.echo(str(path))


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
    app(prog_name="imagegen")


if __name__ == "__main__":  # pragma: no cover
    main()

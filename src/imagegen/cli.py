"""The command line: ``imagegen serve`` and ``imagegen generate``. A thin edge over the core.

Start-up time counts (``imagegen serve`` should answer within a second), so each command imports
what it needs when it runs: ``generate`` never loads the server, ``serve`` never loads the
client's progress display.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from imagegen.config import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="imagegen: image generation API")

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


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default 8000).")] = None,
) -> None:
    """Serve the imagegen API."""
    import uvicorn

    from imagegen.api.app import create_app
    from imagegen.logs import configure_logging
    from imagegen.serving import ServeRefused, hold_data_dir, listen

    settings = load_settings(host=host, port=port)
    check_catalog(settings)
    configure_logging(settings.log_level)
    # The data directory and the socket first: a second serve on either stops here, before
    # it could take up (or, leaving, cancel) the jobs of the one already running.
    try:
        with hold_data_dir(settings.data_dir):
            sock = listen(settings.host, settings.port)
            config = uvicorn.Config(
                create_app(settings),
                log_level=settings.log_level,
                access_log=False,
                ws="none",  # no websocket routes: don't import a websocket implementation
                timeout_graceful_shutdown=5,
            )
            uvicorn.Server(config).run(sockets=[sock])
    except ServeRefused as exc:
        typer.echo(f"imagegen: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None


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


def main() -> None:
    app(prog_name="imagegen")


if __name__ == "__main__":  # pragma: no cover
    main()

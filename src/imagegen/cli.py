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
    from pydantic_settings import SettingsError

    from imagegen.config import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        for problem in exc.errors():
            if not problem["loc"]:  # a rule between settings: the message names them
                typer.echo(f"imagegen: invalid settings: {problem['msg']}", err=True)
                continue
            name = str(problem["loc"][0])
            env = name if name.isupper() else f"IMAGEGEN_{name.upper()}"
            where = ".".join(str(part) for part in problem["loc"][1:])
            message = f"{problem['msg']} (item {where})" if where else problem["msg"]
            typer.echo(f"imagegen: invalid setting {env}: {message}", err=True)
    except SettingsError as exc:  # a value the settings source could not even parse
        field = str(exc).split('"')[1] if str(exc).count('"') >= 2 else "settings"
        typer.echo(f"imagegen: invalid setting IMAGEGEN_{field.upper()}: {exc}", err=True)
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


def warn_about_settings(settings: Settings) -> None:
    import logging

    from imagegen.config import setting_warnings

    for line in setting_warnings(settings):
        logging.getLogger("imagegen.config").warning("%s", line)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default 8000).")] = None,
) -> None:
    """Serve the imagegen API."""
    import uvicorn

    from imagegen.api.app import create_app
    from imagegen.logs import configure_logging
    from imagegen.serving import raise_descriptor_limit, uvicorn_config

    settings = load_settings(host=host, port=port)
    check_catalog(settings)
    configure_logging(settings.log_level)
    warn_about_settings(settings)
    application = create_app(settings)
    raise_descriptor_limit(settings.max_connections)
    uvicorn.Server(uvicorn_config(application, settings)).run()


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

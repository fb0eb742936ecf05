"""The ``imagegen`` command's entry point (``python -m imagegen`` too).

``imagegen serve`` with nothing but its own options (``--host``, ``--port``, ``--workers``, each
given once with its value) starts the server straight away (``serve_command.serve``): importing
typer and building every command's parser cost some 20 ms of a start-up that should answer
within half a second. Anything else (another command, ``--help``, a mistake to report) goes to
the typer application in ``cli.py``, which also defines ``serve``'s options and help; a test
holds the two to the same options.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServeArguments:
    """``imagegen serve``'s options; None: not given (the setting stands)."""

    host: str | None = None
    port: int | None = None
    workers: str | None = None


#: Each option of ``serve`` and how its value is read (as typer reads it: ``int`` for a port).
SERVE_OPTIONS = {"--host": str, "--port": int, "--workers": str}


def serve_arguments(args: Sequence[str]) -> ServeArguments | None:
    """``args`` (the command line after ``imagegen``) read as ``serve`` with only its own
    options, as ``--name value`` or ``--name=value``; None for anything else, for typer to
    read (and answer, for help or a mistake)."""
    if not args or args[0] != "serve":
        return None
    values: dict[str, str | int] = {}
    rest = list(args[1:])
    while rest:
        name, equals, value = rest.pop(0).partition("=")
        if name not in SERVE_OPTIONS or name in values:
            return None
        if not equals:
            if not rest or rest[0].startswith("-"):
                return None
            value = rest.pop(0)
        try:
            values[name] = SERVE_OPTIONS[name](value)
        except ValueError:
            return None  # typer says what is wrong with it
    port = values.get("--port")
    return ServeArguments(
        host=str(values["--host"]) if "--host" in values else None,
        port=port if isinstance(port, int) else None,
        workers=str(values["--workers"]) if "--workers" in values else None,
    )


def main() -> None:
    from imagegen import collector

    collector.pause()  # until the server has started (tune_collector), or another command begins
    serve = serve_arguments(sys.argv[1:])
    if serve is not None:
        from imagegen.serve_command import serve as run_serve

        run_serve(host=serve.host, port=serve.port, workers=serve.workers)
        return
    from imagegen.cli import app

    app(prog_name="imagegen")

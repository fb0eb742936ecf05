"""``imagegen serve``: from the settings to a running server, and the checks that stop it first.

Neither this module nor what it imports loads typer: the ``imagegen`` command runs ``serve``
from here without building the command line's commands (``command.py``), some 20 ms of a
start-up that should answer within half a second. A problem found before the server starts is
one line on stderr, ``imagegen: ...``, and an exit status: ``EXIT_USAGE`` for a bad setting,
``EXIT_FAILED`` when the data directory or the address is taken. The other commands read their
settings with ``load_settings`` too.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from imagegen.config import Settings

EXIT_USAGE = 2
EXIT_FAILED = 1


def stop(message: object, exit_code: int) -> NoReturn:
    """Say ``imagegen: message`` on stderr and exit with ``exit_code``."""
    print(f"imagegen: {message}", file=sys.stderr)
    raise SystemExit(exit_code)


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
                print(f"imagegen: invalid settings: {problem['msg']}", file=sys.stderr)
                continue
            name = str(problem["loc"][0])
            env = name if name.isupper() else f"IMAGEGEN_{name.upper()}"
            where = ".".join(str(part) for part in problem["loc"][1:])
            message = f"{problem['msg']} (item {where})" if where else problem["msg"]
            print(f"imagegen: invalid setting {env}: {message}", file=sys.stderr)
    except SettingsError as exc:  # a value the settings source could not even parse
        field = str(exc).split('"')[1] if str(exc).count('"') >= 2 else "settings"
        stop(f"invalid setting IMAGEGEN_{field.upper()}: {exc}", EXIT_USAGE)
    raise SystemExit(EXIT_USAGE)


def check_catalog(settings: Settings) -> None:
    """A bad catalog file stops start-up with a message naming the file and each key."""
    from imagegen.catalog_file import load_catalog_file
    from imagegen.errors import ConfigurationError

    try:
        load_catalog_file(settings.catalog_path, settings)
    except ConfigurationError as exc:
        stop(exc, EXIT_USAGE)


def check_storage(settings: Settings) -> None:
    """An S3 URL without the S3 client installed stops start-up with the install command."""
    from imagegen.errors import ConfigurationError
    from imagegen.storage.factory import require_backend

    try:
        require_backend(settings)
    except ConfigurationError as exc:
        stop(exc, EXIT_USAGE)


def check_exposure(settings: Settings) -> None:
    """Bound to a non-loopback address with no API key: one line, and exit."""
    from imagegen.auth.exposure import anonymous_allowed

    if anonymous_allowed(settings):  # no key is needed: none to look for
        return
    import asyncio

    from imagegen.key_admin import exposure_problem

    problem = asyncio.run(exposure_problem(settings))
    if problem is not None:
        stop(problem, EXIT_USAGE)


def warn_about_settings(settings: Settings) -> None:
    import logging

    from imagegen.config import setting_warnings

    for line in setting_warnings(settings):
        logging.getLogger("imagegen.config").warning("%s", line)


def serve(host: str | None = None, port: int | None = None, workers: str | None = None) -> None:
    """Serve the imagegen API; the arguments override the settings (None: as they are)."""
    import logging

    import uvicorn

    from imagegen import collector
    from imagegen.allocator import tune_allocator
    from imagegen.api.app import create_app
    from imagegen.logs import configure_logging
    from imagegen.serving import (
        ServeRefused,
        backlog_warning,
        hold_data_dir,
        listen,
        raise_descriptor_limit,
        uvicorn_config,
    )

    tune_allocator()  # before any thread starts; the workers do the same
    settings = load_settings(host=host, port=port, workers=workers)
    if settings.worker_count > 1 and not settings.shared_database:
        from imagegen.workers import SQLITE_REFUSAL

        stop(SQLITE_REFUSAL, EXIT_USAGE)
    check_catalog(settings)
    check_storage(settings)
    check_exposure(settings)
    configure_logging(settings.log_level, settings.log_format)
    warn_about_settings(settings)
    raise_descriptor_limit(settings.max_connections)
    capped = backlog_warning(settings.backlog)
    if capped is not None:
        logging.getLogger("imagegen.serving").warning("%s", capped)
    # The data directory and the socket first: a second serve on either stops here, before
    # it could take up (or, leaving, cancel) the jobs of the one already running.
    try:
        with hold_data_dir(settings.data_dir):
            sock = listen(settings.host, settings.port, settings.backlog)
            if settings.worker_count > 1:
                from imagegen.workers import run_workers

                collector.resume()  # this process only supervises the workers: nothing to freeze
                run_workers(settings, sock, settings.worker_count)
                return
            server = uvicorn.Server(
                uvicorn_config(create_app(settings, started=collector.tune_collector), settings)
            )
            server.run(sockets=[sock])
    except ServeRefused as exc:
        stop(exc, EXIT_FAILED)

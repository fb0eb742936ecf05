"""What the ``imagegen`` command loads: each command imports what it needs when it runs."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
import typing

import pytest
import typer
import typer.main

from imagegen import cli
from imagegen.command import SERVE_OPTIONS, ServeArguments, serve_arguments


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_importing_the_cli_loads_neither_server_nor_client() -> None:
    result = run_python(
        """
        import sys
        import imagegen.cli
        heavy = ["imagegen.config", "fastapi", "uvicorn", "httpx", "rich", "sqlalchemy"]
        print([name for name in heavy if name in sys.modules])
        """
    )
    assert result.stdout.strip() == "[]", result.stderr


def test_the_command_reads_serve_with_its_own_options_without_typer() -> None:
    result = run_python(
        """
        import sys
        from imagegen.command import serve_arguments
        print(serve_arguments(["serve", "--host", "0.0.0.0", "--port=8080", "--workers", "2"]))
        print("typer" in sys.modules)
        """
    )
    lines = result.stdout.strip().splitlines()
    assert lines == [
        "ServeArguments(host='0.0.0.0', port=8080, workers='2')",
        "False",
    ], result.stderr


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["keys", "list"],
        ["serve", "--help"],
        ["serve", "--port", "eighty"],  # typer names the option and what is wrong
        ["serve", "--port"],
        ["serve", "--host", "--port", "1"],
        ["serve", "--port", "1", "--port", "2"],
        ["serve", "--hots", "x"],
        ["serve", "extra"],
        ["--help", "serve"],
    ],
)
def test_anything_but_serve_with_its_own_options_goes_to_typer(args: list[str]) -> None:
    assert serve_arguments(args) is None


def test_serve_with_no_options_leaves_every_setting_as_it_is() -> None:
    assert serve_arguments(["serve"]) == ServeArguments()


def test_the_command_and_typer_know_the_same_serve_options() -> None:
    # typer's options for serve: their names, and the type of each (from its annotation)
    serve = typer.main.get_command(cli.app).commands["serve"]  # type: ignore[attr-defined]
    names = sorted(opt for param in serve.params for opt in param.opts if opt != "--help")
    hints = typing.get_type_hints(cli.serve, include_extras=True)
    kinds = {f"--{name}": typing.get_args(hints[name])[0] for name in hints if name != "return"}
    assert names == sorted(SERVE_OPTIONS)
    assert kinds == {name: kind | None for name, kind in SERVE_OPTIONS.items()}
    fields = {name.removeprefix("--") for name in SERVE_OPTIONS}
    assert fields == {field.name for field in dataclasses.fields(ServeArguments)}

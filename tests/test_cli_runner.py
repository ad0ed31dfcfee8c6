"""soakwatch.cli.run_main: how every command ends (exit code and message), and --version on
each component command."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from soakwatch.cli import add_version, run_main
from soakwatch.errors import ConfigError, SoakwatchError, UsageError
from soakwatch.version import __version__


class QuotaError(SoakwatchError):
    exit_code = 4


def _body_raising(exc: BaseException) -> Callable[[list[str]], int]:
    def body(argv: list[str]) -> int:
        raise exc

    return body


def test_ctrl_c_returns_130_and_says_interrupted(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main("soak demo", _body_raising(KeyboardInterrupt()), []) == 130
    assert capsys.readouterr().err == "soak demo: interrupted\n"


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (UsageError("--rate: not a rate"), 2, "soak demo: --rate: not a rate\n"),
        (
            ConfigError("unknown key", source="a.yaml", key="x"),
            2,
            "soak demo: a.yaml: x: unknown key\n",
        ),
        (QuotaError("over quota"), 4, "soak demo: over quota\n"),
    ],
)
def test_a_soakwatch_error_is_one_prefixed_line_and_its_own_exit_code(
    exc: SoakwatchError, code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main("soak demo", _body_raising(exc), []) == code
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", message)


def _parsing_body(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="soak demo")
    parser.add_argument("--count", type=int, required=True)
    add_version(parser)
    return int(parser.parse_args(argv).count)


def test_an_argparse_usage_error_is_exit_2_and_help_and_version_are_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_main("soak demo", _parsing_body, ["--count", "many"]) == 2
    assert "invalid int value: 'many'" in capsys.readouterr().err
    assert run_main("soak demo", _parsing_body, ["--help"]) == 0
    assert "--count COUNT" in capsys.readouterr().out
    assert run_main("soak demo", _parsing_body, ["--version"]) == 0
    assert capsys.readouterr().out == f"soak demo {__version__}\n"
    assert run_main("soak demo", _parsing_body, ["--count", "7"]) == 7


def test_a_bug_keeps_its_traceback() -> None:
    with pytest.raises(ZeroDivisionError):
        run_main("soak demo", _body_raising(ZeroDivisionError()), [])


@pytest.mark.parametrize(
    ("module", "argv", "prog"),
    [
        ("soakwatch.exporter.cli", ["--version"], "soak-exporter"),
        ("soakwatch.analyzer.cli", ["--version"], "soak-analyze"),
        ("soakwatch.load.cli", ["--version"], "soak load"),
        ("soakwatch.rules.cli", ["--version"], "soak rules"),
        ("soakwatch.dashboards.cli", ["--version"], "soak dashboards"),
    ],
)
def test_every_component_command_prints_the_one_version(
    module: str, argv: list[str], prog: str, capsys: pytest.CaptureFixture[str]
) -> None:
    main = __import__(module, fromlist=["main"]).main
    assert main(argv) == 0
    assert capsys.readouterr().out == f"{prog} {__version__}\n"


@pytest.mark.parametrize(
    "argv",
    [["soak-analyze", "--version"], ["soak", "load", "--version"], ["soak", "rules", "--version"]],
)
def test_the_console_scripts_print_the_version(argv: list[str]) -> None:
    script = str(Path(sys.executable).with_name(argv[0]))
    done = subprocess.run([script, *argv[1:]], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(f" {__version__}\n")
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("module", "argv", "message"),
    [
        ("soakwatch.analyzer.cli", ["--format", "pdf"], "soak-analyze: argument --format: "),
        ("soakwatch.load.cli", ["--bogus"], "soak load: unrecognized arguments: --bogus"),
        ("soakwatch.dashboards.cli", ["build"], "soak dashboards: build needs --output-dir"),
    ],
)
def test_usage_errors_are_one_line_prefixed_with_the_program(
    module: str, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    main = __import__(module, fromlist=["main"]).main
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err

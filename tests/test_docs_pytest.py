"""Every code block of docs/pytest.md, executed (issue 15): each block is preceded by
``<!-- doc-test: NAME -->`` and NAME has a check here, which writes the block as a file, runs it
with the real plugin (pytester) and asserts the documented outcome. Durations are kept short
with the documented knobs (``--soak-duration``, a config's ``rules``); a block without a check,
or a check without its block, fails."""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

# loaded outside the inner in-process runs, which unload what they import (numpy loads once)
import soakwatch.analyzer.evaluate  # noqa: F401
from soakwatch.run.demo import sample_service_command

DOC = Path(__file__).resolve().parents[1] / "docs" / "pytest.md"
SHORT_RULES = Path(__file__).parent / "run" / "data" / "short-rules.yaml"
BLOCK = re.compile(r"<!-- doc-test: ([\w-]+) -->\n```(\w+)\n(.*?)\n```", re.S)
SOAK_ENVIRONMENT = (
    "RUN_SOAK_TESTS", "RUN_COMPLETE_SOAK_TEST", "SOAK_PROFILE", "SOAK_DURATION", "SOAK_CONFIG",
    "SOAK_TEST_DURATION_HOURS", "SOAK_SAMPLING_INTERVAL", "SOAK_INCONCLUSIVE", "SOAK_PROGRESS",
)  # fmt: skip


def blocks() -> dict[str, str]:
    text = DOC.read_text()
    found = {name: body for name, _, body in BLOCK.findall(text)}
    fences = text.count("\n```") // 2
    assert len(found) == fences, f"{fences - len(found)} code block(s) without <!-- doc-test -->"
    return found


BLOCKS = blocks()


@pytest.fixture(autouse=True)
def clean_soak_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SOAK_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


def write_block(pytester: pytest.Pytester, name: str) -> Path:
    """Write a block whose first line is ``# FILE`` as that file."""
    first, _, rest = BLOCKS[name].partition("\n")
    assert first.startswith("# "), f"block {name} does not name its file"
    path = pytester.path / first[2:].strip()
    path.write_text(rest + "\n")
    return path


def command(line: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The pytest arguments of a documented ``[VAR=value ...] pytest ARGS`` line; the variables
    are set."""
    words = shlex.split(line)
    while "=" in words[0]:
        name, _, value = words.pop(0).partition("=")
        monkeypatch.setenv(name, value)
    assert words.pop(0) == "pytest", line
    return words


def patterns(name: str) -> list[str]:
    """The documented output as fnmatch patterns: figures and rules of underscores vary."""
    lines = []
    for line in BLOCKS[name].splitlines():
        line = line.replace("[", "\0").replace("]", "[]]").replace("\0", "[[]")
        line = re.sub(r"_{3,}", "_*", line)
        line = re.sub(r"[0-9](?:[0-9,]*[0-9])?(?:\.[0-9]+)?", "*", line)
        lines.append(line + "*")
    return lines


def test_every_block_has_a_check() -> None:
    checked = {"marker", "parser", "parser-run", "parser-output", "leak", "leak-output",
               "inconclusive", "inconclusive-output", "ini", "soak-run", "soak-run-config",
               "soak-run-run", "suite-run"}  # fmt: skip
    assert set(BLOCKS) == checked


def test_marker_block_is_what_pytest_markers_lists(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines([f"{BLOCKS['marker']}: a soak test*"])


def test_parser_example_passes_as_documented(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_block(pytester, "parser")
    result = pytester.runpytest_subprocess(*command(BLOCKS["parser-run"], monkeypatch))
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(patterns("parser-output"))


def test_leak_example_fails_as_documented(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_block(pytester, "leak")
    arguments = command(
        BLOCKS["parser-run"].replace("test_parser.py", "test_handler.py"), monkeypatch
    )
    result = pytester.runpytest_subprocess(*arguments)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(patterns("leak-output"))


def test_inconclusive_example_fails_as_documented_and_the_ini_block_skips_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_block(pytester, "inconclusive")
    monkeypatch.setenv("RUN_SOAK_TESTS", "1")
    result = pytester.runpytest("test_short.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(patterns("inconclusive-output"))
    pytester.runpytest("test_short.py", "--soak-inconclusive=pass").assert_outcomes(
        passed=1, warnings=1
    )
    (pytester.path / "pytest.ini").write_text(BLOCKS["ini"] + "\n")
    result = pytester.runpytest("test_short.py", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED * soak_monitor: inconclusive: only * samples*"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def backend() -> Iterator[int]:
    """The sample service (a real child process) on a port of its own: the documented backend."""
    port = free_port()
    process = subprocess.Popen(
        sample_service_command("--port", str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 20
    while " listening on " not in process.stdout.readline():
        assert process.poll() is None and time.monotonic() < deadline, "sample service down"
    yield port
    process.terminate()
    process.wait(timeout=10)


def documented_config(pytester: pytest.Pytester, port: int) -> None:
    """soak.yaml as documented, on the backend's port, with the short test rules (a documented
    key of the soak config): the shipped memory rule needs an hour."""
    path = write_block(pytester, "soak-run-config")
    config = yaml.safe_load(path.read_text().replace("8080", str(port)))
    config["rules"] = str(SHORT_RULES)
    path.write_text(yaml.safe_dump(config))


@pytest.mark.slow
def test_soak_run_example_passes_against_a_healthy_backend(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, backend: int
) -> None:
    documented_config(pytester, backend)
    write_block(pytester, "soak-run")
    arguments = command(BLOCKS["soak-run-run"], monkeypatch)
    result = pytester.runpytest_subprocess(*arguments, "--soak-duration", "20s", "-rf")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["soak_run test_backend_does_not_leak: *s/20s | load *"])


def test_suite_commands_collect_the_eight_tests_of_the_table(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Collected, not run (each test is a full soak run): the commands as written select the
    eight tests of the table."""
    documented_config(pytester, free_port())
    for line in BLOCKS["suite-run"].splitlines():
        with monkeypatch.context() as patch:
            result = pytester.runpytest_subprocess(*command(line, patch), "--collect-only", "-q")
        assert result.ret == pytest.ExitCode.OK, result.stdout.str()
        result.stdout.fnmatch_lines(["*8 tests collected*"])
        for test in ("test_memory_leak_detection", "test_complete_suite"):
            result.stdout.fnmatch_lines([f"*::{test}"])

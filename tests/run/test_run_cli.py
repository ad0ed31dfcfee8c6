"""``soak run``'s command line as a user meets it: ``--version``, ``--check``, and a missing extra
or server program stopping the run in one line before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from soakwatch.run import main
from soakwatch.version import __version__

DATA = Path(__file__).parent / "data"


def test_version_prints_the_program_and_the_version_and_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"soak run {__version__}"


def test_check_accepts_a_whole_config_in_one_line_and_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = DATA / "check-ok.yaml"
    assert main(["--check", "--config", str(path), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert out.startswith(f"soak run: {path}: OK (2 checks, exporter: 1 services, ")
    assert "load: 2 scenarios" in out and "rules: 7 from" in out
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "invalid-load-rate.yaml",
            "{data}/invalid-load-rate.yaml: load.scenarios[0].rate: must be greater than 0, "
            "got '-5/s'",
        ),
        (
            "invalid-exporter-match.yaml",
            "{data}/invalid-exporter-match.yaml: exporter.services[0].match: exactly one of "
            "pid, pidfile, cmdline is required",
        ),
        (
            "check-bad-rules.yaml",
            "{data}/invalid-rules-version.yaml: version: unsupported version 2; this soakwatch "
            "reads 1",
        ),
    ],
)
def test_check_rejects_a_bad_config_with_exit_2_naming_the_file_and_the_key(
    name: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--check", "--config", str(DATA / name)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == "soak run: " + message.format(data=DATA)


def test_check_without_a_config_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check"]) == 2
    assert capsys.readouterr().err.strip() == "soak run: --check needs --config FILE"


def _without(
    modules: list[str], argv: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``soak run ARGV`` in a fresh interpreter in which ``modules`` cannot be imported, as on
    an install without their extra."""
    blocked = "".join(f"sys.modules[{name!r}] = None; " for name in modules)
    code = f"import sys; {blocked}from soakwatch.run import main; sys.exit(main({argv!r}))"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )


def test_without_the_analyzer_extra_a_run_exits_2_in_one_line_before_anything_starts(
    tmp_path: Path,
) -> None:
    config = tmp_path / "soak.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "duration": "5s",
                "exporter": {"services": [{"name": "me", "match": {"pid": os.getpid()}}]},
            }
        )
    )
    run_dir = tmp_path / "run"
    done = _without(["numpy"], ["--config", str(config), "--out", str(run_dir)])
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "soak run: needs the 'analyzer' extra (numpy is not installed): "
        "pip install 'soakwatch[analyzer]'"
    )
    assert not run_dir.exists(), "the run started something before the extra check"


def test_the_demo_without_redis_server_exits_2_at_once_naming_the_debian_package(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    started = time.monotonic()
    done = _without([], ["--demo"], env={**os.environ, "PATH": str(empty)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "soak run: redis-server not found: install the Debian package 'redis-server' "
        "(./dev.sh setup)"
    )
    assert time.monotonic() - started < 30


def test_the_demo_without_the_redis_extra_exits_2_naming_the_extra() -> None:
    done = _without(["redis"], ["--demo"])
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "soak run: needs the 'redis' extra (redis is not installed): pip install 'soakwatch[redis]'"
    )

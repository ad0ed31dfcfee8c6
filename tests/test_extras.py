"""Optional dependencies: a command that needs an extra says which, in one line, exit 2, before
it does any work; a run uses only the extras its own config needs."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from soakwatch.cli import run_main
from soakwatch.extras import MissingExtraError, require_extra

REPO = Path(__file__).resolve().parents[1]
NOT_INSTALLED = "soakwatch_no_such_module"  # genuinely absent: find_spec finds nothing
CORE = ["prometheus-client", "psutil", "pyyaml", "requests"]


def test_a_missing_module_raises_the_extra_error_naming_the_extra_and_the_install() -> None:
    with pytest.raises(MissingExtraError) as caught:
        require_extra("http", NOT_INSTALLED)
    assert str(caught.value) == (
        f"needs the 'http' extra ({NOT_INSTALLED} is not installed): pip install 'soakwatch[http]'"
    )
    assert caught.value.exit_code == 2
    require_extra("http", "json")  # present: no error


def test_a_command_needing_a_missing_extra_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    worked = []

    def body(argv: list[str]) -> int:
        require_extra("redis", NOT_INSTALLED)
        worked.append(argv)
        return 0

    assert run_main("soak load", body, []) == 2
    assert worked == []
    assert capsys.readouterr().err == (
        f"soak load: needs the 'redis' extra ({NOT_INSTALLED} is not installed): "
        "pip install 'soakwatch[redis]'\n"
    )


def test_a_redis_only_load_run_never_imports_aiohttp(redis_server: Any, tmp_path: Path) -> None:
    config = tmp_path / "load.yaml"
    config.write_text(
        "duration: 1s\n"
        "scenarios:\n"
        f"  - {{kind: redis, url: '{redis_server.url}', rate: 20/s, statements: ['PING']}}\n",
        encoding="utf-8",
    )
    code = (
        "import sys\n"
        "from soakwatch.load.cli import main\n"
        f"code = main(['--config', {str(config)!r}, '--quiet'])\n"
        "print(code, 'aiohttp' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    *report, last = done.stdout.splitlines()
    assert last == "0 False", done.stdout
    (line,) = report
    assert line.startswith("redis: ") and " ok=0" not in line and "ok=" in line, line


# -- a real install with the core dependencies only -------------------------------------------


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv holding the soakwatch wheel without its extras (pip reaches the package
    index; its cache makes this quick after the first time)."""
    root = tmp_path_factory.mktemp("core-venv")
    wheels = root / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(REPO), "-w", str(wheels)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, *CORE], check=True, capture_output=True, timeout=600)
    (wheel,) = wheels.glob("soakwatch-*.whl")
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True, capture_output=True, timeout=300)
    yield env_dir / "bin"


def _run(bin_dir: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(bin_dir / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "code", "line"),
    [
        (["soak-analyze", "--help"], 0, None),
        (["soak-analyze", "--version"], 0, None),
        (
            ["soak-analyze", "--run-dir", "x"],
            2,
            "soak-analyze: needs the 'analyzer' extra (numpy is not installed): "
            "pip install 'soakwatch[analyzer]'",
        ),
        (
            ["soak", "load", "--http", "http://127.0.0.1:9/", "--rate", "1/s", "--duration", "1s"],
            2,
            "soak load: needs the 'http' extra (aiohttp is not installed): "
            "pip install 'soakwatch[http]'",
        ),
        (
            ["soak", "load", "--config", "redis-only.yaml"],
            2,
            "soak load: needs the 'redis' extra (redis is not installed): "
            "pip install 'soakwatch[redis]'",
        ),
        (
            ["soak", "dashboards", "push", "--grafana-url", "http://127.0.0.1:9"],
            2,
            "soak dashboards: needs the 'grafana' extra (grafana_client is not installed): "
            "pip install 'soakwatch[grafana]'",
        ),
        (["soak-exporter", "--version"], 0, None),
        (["soak", "load", "--version"], 0, None),
    ],
)
def test_a_core_install_names_the_missing_extra_in_one_line_and_never_a_traceback(
    core_venv: Path, tmp_path: Path, argv: list[str], code: int, line: str | None
) -> None:
    (tmp_path / "redis-only.yaml").write_text(
        "duration: 1s\nscenarios:\n"
        "  - {kind: redis, url: 'redis://127.0.0.1:9/0', rate: 1/s, statements: [PING]}\n",
        encoding="utf-8",
    )
    done = _run(core_venv, *argv, cwd=tmp_path)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    if line is not None:
        assert done.stderr == line + "\n"
    elif argv[-1] == "--version":
        from soakwatch.version import __version__

        assert done.stdout.endswith(f" {__version__}\n")
    else:
        assert "usage:" in done.stdout

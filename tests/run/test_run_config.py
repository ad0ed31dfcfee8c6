"""The soak config border: one small file per error, the exact message for each."""

from __future__ import annotations

from pathlib import Path

import pytest

from soakwatch.errors import ConfigError
from soakwatch.run import main
from soakwatch.run.config import load_run_config, parse_run_config

DATA = Path(__file__).parent / "data"
TYPO = "duraton: unknown key 'duraton' (did you mean 'duration'?)"
NOTHING = (
    "nothing to watch: the file is empty (give an exporter, load or scrape section; "
    "see docs/run.md)"
)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("invalid-unknown-key", TYPO),
        (
            "invalid-check-kind",
            "checks[0].kind: must be one of http, tcp, redis, postgres, clickhouse, got 'gopher'",
        ),
        (
            "invalid-check-url",
            "checks[0].target: URL scheme must be one of postgresql, postgres: "
            "'http://soak:***@127.0.0.1:5432/soak'",
        ),
        ("invalid-duplicate-check", "checks[1].name: duplicate check name 'db'"),
        (
            "invalid-exporter-match",
            "exporter.services[0].match: exactly one of pid, pidfile, cmdline is required",
        ),
        ("invalid-load-rate", "load.scenarios[0].rate: must be greater than 0, got '-5/s'"),
        ("invalid-profile", "profile: must be one of ci, staging, production, demo, got 'weekly'"),
        ("invalid-requires", "load.scenarios[0].requires: no check named 'auth' in checks"),
        ("invalid-empty", NOTHING),
        ("invalid-bare-document-start", NOTHING),
    ],
)
def test_each_bad_config_is_an_error_naming_the_file_and_the_key(name: str, message: str) -> None:
    path = DATA / f"{name}.yaml"
    with pytest.raises(ConfigError) as caught:
        load_run_config(path)
    assert str(caught.value) == f"{path}: {message}"


def test_a_bad_config_exits_2_with_the_message_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = DATA / "invalid-unknown-key.yaml"
    assert main(["--config", str(path)]) == 2
    assert capsys.readouterr().err.strip() == f"soak run: {path}: {TYPO}"


def test_scenarios_remember_the_checks_they_require_and_the_load_section_loses_the_key() -> None:
    config = parse_run_config(
        {
            "checks": [{"name": "auth", "kind": "tcp", "target": "127.0.0.1:9", "required": False}],
            "load": {
                "scenarios": [
                    {"kind": "http", "rate": "5/s", "url": "http://127.0.0.1:9/"},
                    {"name": "ws", "kind": "websocket", "url": "ws://127.0.0.1:9/",
                     "connections": 2, "requires": ["auth"]},
                ]
            },
        },
        source="test",
    )  # fmt: skip
    assert config.scenario_names == ("http", "ws")
    assert config.scenario_requires == {"http": (), "ws": ("auth",)}
    assert all("requires" not in s for s in config.load_without(set())["scenarios"])
    assert [s["kind"] for s in config.load_without({"ws"})["scenarios"]] == ["http"]


def test_relative_rules_and_out_paths_are_taken_from_the_config_files_folder(
    tmp_path: Path,
) -> None:
    path = tmp_path / "soak.yaml"
    path.write_text("rules: my-rules.yaml\nout: runs\nduration: 90s\nsampling_interval: 5s\n")
    config = load_run_config(path)
    assert config.rules_path == tmp_path / "my-rules.yaml"
    assert config.out_dir == tmp_path / "runs"
    assert (config.duration_seconds, config.sampling_interval_seconds) == (90.0, 5.0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--duration", "soon"], "soak run: --duration: not a duration: 'soon'"),
        (["--duration", "0s"], "soak run: --duration: must be greater than 0, got '0s'"),
        (["--prometheus", "ftp://x"], "soak run: --prometheus: URL scheme must be one of http"),
        (["--prometheus", "http://x", "--local-prometheus"], "exclude each other"),
        (["--profile", "weekly"], "invalid choice: 'weekly'"),
    ],
)
def test_command_line_mistakes_exit_2_with_a_reason(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "soak.yaml"
    config.write_text("profile: ci\n")
    assert main([*argv, "--config", str(config)]) == 2
    assert message in capsys.readouterr().err


def test_without_a_config_the_command_asks_for_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "--config FILE is required (or --demo)" in capsys.readouterr().err


def test_a_websocket_scenario_may_leave_its_connection_count_to_the_profile() -> None:
    config = parse_run_config(
        {"load": {"scenarios": [{"name": "ws", "kind": "websocket", "url": "ws://127.0.0.1:9/"}]}},
        source="test",
    )
    assert config.scenario_names == ("ws",)
    with pytest.raises(ConfigError, match=r"test: load\.scenarios\[0\]\.rate"):
        parse_run_config(
            {
                "load": {
                    "scenarios": [{"kind": "http", "rate": "0/s", "url": "http://127.0.0.1:9/"}]
                }
            },
            source="test",
        )


@pytest.mark.parametrize("name", ["invalid-empty", "invalid-bare-document-start"])
@pytest.mark.parametrize("check", [True, False], ids=["check", "run"])
def test_an_empty_config_exits_2_nothing_to_watch_naming_the_file_run_and_check_alike(
    name: str, check: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = DATA / f"{name}.yaml"
    argv = ["--check"] if check else ["--out", str(tmp_path / "run")]
    assert main([*argv, "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == f"soak run: {path}: {NOTHING}"
    assert captured.out == ""
    assert not (tmp_path / "run").exists()

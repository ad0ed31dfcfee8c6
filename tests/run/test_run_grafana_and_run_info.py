"""``soak run`` tells others which run it is: the load driver child publishes
``soak_run_info{run_id}`` (recorded once, from the driver), and ``--grafana-url`` marks the run's
start and end as Grafana annotations.

No Grafana server can be installed on this machine: the annotations go to a small recording HTTP
server in this test that answers ``POST /api/annotations`` the way Grafana documents it (and
refuses the first one with a 500, a fault a healthy Grafana would not produce on demand), and the
assertions are on the requests grafana-client really sent."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from json_recorder import recording_json_server
from soakwatch.recording import read_samples
from soakwatch.run import main

TOKEN = "glsa_test-token-never-printed"


@dataclass
class RecordingGrafana:
    url: str = ""
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    refuse_first: bool = True

    def answer(self, method: str, path: str) -> tuple[int, dict[str, Any]]:
        if method == "POST" and path == "/api/annotations":
            if self.refuse_first and len(self.requests) == 1:
                return 500, {"message": "database is locked"}
            return 200, {"id": 100 + len(self.requests), "message": "Annotation added"}
        return 404, {"message": "not found"}


@pytest.fixture
def grafana() -> Iterator[RecordingGrafana]:
    fake = RecordingGrafana()

    def record(method: str, path: str, headers: dict[str, str], body: Any) -> None:
        fake.requests.append((method, path, headers, body))

    with recording_json_server(
        record, lambda method, path, _body: fake.answer(method, path)
    ) as url:
        fake.url = url
        yield fake


def short_config(tmp_path: Path, service: Any) -> Path:
    config = {
        "profile": "ci",
        "duration": "4s",
        "sampling_interval": "1s",
        "checks": [{"name": "backend", "kind": "http", "target": f"{service.url}/health"}],
        "exporter": {
            "scan_interval": "1s",
            "services": [{"name": "backend", "match": {"pid": service.pid}}],
        },
        "load": {
            "status_interval": "1h",
            "scenarios": [
                {"name": "api", "kind": "http", "rate": "10/s",
                 "endpoints": [{"url": f"{service.url}/api/hello"}]},
            ],
        },
    }  # fmt: skip
    path = tmp_path / "soak.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_a_run_records_the_load_drivers_run_info_and_annotates_its_start_and_end_in_grafana(
    tmp_path: Path,
    sample_service_factory: Any,
    grafana: RecordingGrafana,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("SOAK_GRAFANA_TOKEN", TOKEN)
    service = sample_service_factory()
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="soakwatch.run"):
        code = main(
            ["--config", str(short_config(tmp_path, service)), "--out", str(run_dir),
             "--grafana-url", grafana.url]
        )  # fmt: skip
    captured = capsys.readouterr()
    info = json.loads((run_dir / "run.json").read_text())
    run_id = info["run_id"]
    assert code in (0, 1, 3), captured.err

    # soak_run_info: one series, the load driver's, scraped with the run's job/instance labels.
    recorded = read_samples(run_dir, ["soak_run_info"])
    [(key, (times, values))] = recorded.items()
    labels = dict(key[1])
    assert labels["run_id"] == run_id
    assert (labels["profile"], labels["shard"], labels["job"]) == ("ci", "0/1", "load")
    assert len(times) >= 3 and set(values.tolist()) == {1.0}

    # Grafana: a point at the start (refused: a warning, the run went on), a region at the end.
    start, end = grafana.requests
    assert [(method, path) for method, path, _, _ in grafana.requests] == [
        ("POST", "/api/annotations"),
        ("POST", "/api/annotations"),
    ]
    assert all(headers["Authorization"] == f"Bearer {TOKEN}" for _, _, headers, _ in (start, end))
    assert start[3]["time"] == int(info["started"] * 1000)
    assert start[3].get("timeEnd") is None
    assert start[3]["tags"] == ["soakwatch", run_id]
    assert start[3]["text"] == f"soak run {run_id} started (ci profile)"
    assert end[3]["time"] == int(info["started"] * 1000)
    assert end[3]["timeEnd"] == int(info["ended"] * 1000)
    assert end[3]["tags"] == ["soakwatch", run_id]
    assert end[3]["text"] == f"soak run {run_id}: {info['status']}"
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "Grafana annotation of run" in warning.getMessage()
    assert "database is locked" in warning.getMessage()
    assert "grafana: run end annotated (102)" in captured.err
    for text in (captured.out, captured.err, caplog.text, (run_dir / "run.json").read_text()):
        assert TOKEN not in text


def test_a_bad_grafana_url_is_a_usage_error_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "soak.yaml"
    config.write_text("profile: ci\n")
    code = main(["--config", str(config), "--grafana-url", "grafana:3000", "--out", str(tmp_path)])
    assert code == 2
    assert "--grafana-url: " in capsys.readouterr().err

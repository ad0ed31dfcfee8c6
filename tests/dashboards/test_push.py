"""``soak dashboards push`` and ``annotate`` through grafana-client.

No Grafana server can be installed on this machine, so these tests talk to a small recording HTTP
server on 127.0.0.1 that answers the few Grafana API calls the push makes (folder lookup and
creation, dashboard save, annotation) the way Grafana documents them, and records every request.
The assertions are on what grafana-client actually sent over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from json_recorder import recording_json_server
from soakwatch.dashboards import cli
from soakwatch.dashboards.push import annotate_run, connect, ensure_folder, mark_run
from soakwatch.errors import SourceError

REPO = Path(__file__).resolve().parents[2]
COMMITTED = sorted((REPO / "dashboards" / "soakwatch" / "dashboards").glob("*.json"))


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeGrafana:
    """Grafana's answers, by (method, path); ``folders`` holds the folders that "exist"."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    refuse_saves: bool = False

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "GET" and path.startswith("/api/folders/"):
            uid = path.rsplit("/", 1)[1]
            if uid == "broken":
                return 500, {"message": "database is locked"}
            if uid in self.folders:
                return 200, self.folders[uid]
            return 404, {"message": "folder not found"}
        if method == "POST" and path == "/api/folders":
            folder = {"id": 7, "uid": body["uid"], "title": body["title"]}
            self.folders[body["uid"]] = folder
            return 200, folder
        if method == "POST" and path == "/api/dashboards/db":
            if self.refuse_saves:
                return 403, {"message": "Access denied to save dashboard"}
            uid = body["dashboard"]["uid"]
            return 200, {
                "id": 3,
                "uid": uid,
                "url": f"/d/{uid}/x",
                "status": "success",
                "version": 2,
            }
        if method == "POST" and path == "/api/annotations":
            return 200, {"id": 42, "message": "Annotation added"}
        return 404, {"message": "not found"}

    def calls(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    fake = FakeGrafana()

    def record(method: str, path: str, headers: dict[str, str], body: Any) -> None:
        fake.requests.append(Recorded(method, path, headers, body))

    with recording_json_server(record, fake.answer) as url:
        fake.url = url
        yield fake


def test_push_creates_the_missing_folder_and_upserts_every_dashboard_into_it(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SOAK_GRAFANA_TOKEN", "t0ken")
    assert cli.main(["push", "--grafana-url", grafana.url, "--folder", "Soak tests"]) == 0
    (created,) = grafana.calls("POST", "/api/folders")
    assert created.body == {"title": "Soak tests", "uid": "soakwatch"}
    saves = grafana.calls("POST", "/api/dashboards/db")
    assert [s.body["dashboard"]["uid"] for s in saves] == [
        json.loads(p.read_text())["uid"] for p in COMMITTED
    ]
    for save, path in zip(saves, COMMITTED, strict=True):
        assert save.body["folderUid"] == "soakwatch"
        assert save.body["overwrite"] is True
        assert save.body["dashboard"] == {**json.loads(path.read_text()), "id": None}
    assert all(r.headers["Authorization"] == "Bearer t0ken" for r in grafana.requests)
    out = capsys.readouterr().out
    assert "version 2" in out and "t0ken" not in out


def test_push_into_an_existing_folder_does_not_create_it_again(grafana: FakeGrafana) -> None:
    grafana.folders["soakwatch"] = {"id": 1, "uid": "soakwatch", "title": "Soak"}
    assert cli.main(["push", "--grafana-url", grafana.url]) == 0
    assert grafana.calls("POST", "/api/folders") == []
    assert len(grafana.calls("POST", "/api/dashboards/db")) == len(COMMITTED)


def test_credentials_in_the_url_become_basic_auth_and_never_reach_the_output(
    grafana: FakeGrafana, capsys: pytest.CaptureFixture[str]
) -> None:
    url = grafana.url.replace("http://", "http://admin:s3cret@")
    assert cli.main(["push", "--grafana-url", url]) == 0
    assert grafana.requests[0].headers["Authorization"].startswith("Basic ")
    captured = capsys.readouterr()
    assert "s3cret" not in captured.out + captured.err


def test_a_refused_save_is_an_error_naming_the_dashboard_with_exit_code_2(
    grafana: FakeGrafana, capsys: pytest.CaptureFixture[str]
) -> None:
    grafana.refuse_saves = True
    assert cli.main(["push", "--grafana-url", grafana.url]) == 2
    err = capsys.readouterr().err
    assert "Grafana refused to save dashboard" in err and "Access denied" in err


def test_an_unreachable_grafana_is_an_error_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import servers

    port = servers.free_port()  # nothing listens there
    assert cli.main(["push", "--grafana-url", f"http://127.0.0.1:{port}"]) == 2
    assert "cannot reach Grafana" in capsys.readouterr().err


def test_annotate_marks_a_finished_run_as_a_region_tagged_with_its_id(
    grafana: FakeGrafana,
) -> None:
    api = connect(grafana.url)
    annotation_id = annotate_run(api, "ci-20261125", start_seconds=1000.5, end_seconds=4600)
    assert annotation_id == 42
    (call,) = grafana.calls("POST", "/api/annotations")
    assert call.body["time"] == 1000500 and call.body["timeEnd"] == 4600000
    assert call.body["tags"] == ["soakwatch", "ci-20261125"]


def test_the_annotate_command_reads_iso_times(
    grafana: FakeGrafana, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["annotate", "--grafana-url", grafana.url, "--run-id", "r1"]
    assert cli.main([*args, "--start", "2026-11-25T20:00:00Z"]) == 0
    (call,) = grafana.calls("POST", "/api/annotations")
    assert call.body["time"] == 1795636800000 and call.body["timeEnd"] is None
    assert "annotation 42" in capsys.readouterr().out
    assert cli.main([*args, "--start", "2000", "--end", "1000"]) == 2


def test_ensure_folder_passes_on_errors_other_than_not_found(grafana: FakeGrafana) -> None:
    api = connect(grafana.url)
    grafana.folders["soakwatch"] = {"uid": "soakwatch"}
    assert ensure_folder(api) == "soakwatch"
    with pytest.raises(SourceError, match=r"read folder 'broken'.*database is locked"):
        ensure_folder(api, uid="broken")
    assert grafana.calls("POST", "/api/folders") == []


def test_mark_run_annotates_with_the_token_from_the_environment(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOAK_GRAFANA_TOKEN", "env-token")
    assert mark_run(grafana.url, "r7", start_seconds=10) == 42
    (call,) = grafana.calls("POST", "/api/annotations")
    assert call.headers["Authorization"] == "Bearer env-token"
    assert call.body["tags"] == ["soakwatch", "r7"] and call.body["time"] == 10000

"""Finding the watched process, losing it and picking up its successor."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import psutil
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from soakwatch.exporter.matching import (
    CmdlineMatcher,
    PidfileMatcher,
    PidMatcher,
    ProcessTracker,
    scan_round,
)
from soakwatch.exporter.process import ProcessCollector

EXPORTER = str(Path(sys.executable).with_name("soak-exporter"))


def sample(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name, {"service": "demo"})


def test_cmdline_matcher_finds_the_child_whose_command_line_matches(spawn_child):
    spawn_child()
    target = spawn_child()

    assert CmdlineMatcher(target.marker).find() == target.pid
    assert CmdlineMatcher("no-such-process-[0-9a-f]{32}").find() is None


def test_cmdline_matcher_prefers_the_oldest_of_several_matches(spawn_child):
    older = spawn_child(marker="soakwatch-test-shared-marker-1")
    spawn_child(marker="soakwatch-test-shared-marker-2")

    assert CmdlineMatcher("soakwatch-test-shared-marker-[12]").find() == older.pid


def test_cmdline_matcher_never_matches_the_exporter_itself():
    own_cmdline = " ".join(psutil.Process().cmdline())
    matcher = CmdlineMatcher(f"^{re.escape(own_cmdline)}$")

    assert matcher.find() is None
    assert CmdlineMatcher(".", exclude_pids=frozenset()).find() is not None


def test_a_restarted_process_is_picked_up_and_counted(spawn_child, registry):
    first = spawn_child()
    tracker = ProcessTracker(CmdlineMatcher(first.marker), scan_interval_seconds=0.0)
    ProcessCollector({"demo": tracker}, registry=registry)
    assert sample(registry, "soak_process_up") == 1
    assert sample(registry, "soak_process_restarts_total") == 0

    first.kill()
    assert sample(registry, "soak_process_up") == 0
    assert sample(registry, "soak_process_restarts_total") == 0

    second = spawn_child(marker=first.marker)
    assert sample(registry, "soak_process_up") == 1
    assert sample(registry, "soak_process_restarts_total") == 1
    assert (
        sample(registry, "soak_process_start_time_seconds")
        == psutil.Process(second.pid).create_time()
    )

    second.kill()
    spawn_child(marker=first.marker)
    assert sample(registry, "soak_process_restarts_total") == 2


def test_the_matcher_is_asked_again_at_most_once_per_scan_interval(spawn_child):
    now = [0.0]
    first = spawn_child()
    tracker = ProcessTracker(
        CmdlineMatcher(first.marker), scan_interval_seconds=5.0, clock=lambda: now[0]
    )
    assert tracker.current() is not None
    first.kill()
    now[0] = 100.0
    assert tracker.current() is None  # scans, finds nothing

    spawn_child(marker=first.marker)
    now[0] = 102.0
    assert tracker.current() is None  # too soon to scan again
    now[0] = 105.5
    assert tracker.current() is not None
    assert tracker.restarts == 1


def test_refresh_scans_at_once_whatever_the_interval(spawn_child):
    first = spawn_child()
    tracker = ProcessTracker(CmdlineMatcher(first.marker), scan_interval_seconds=3600.0)
    assert tracker.current() is not None
    first.kill()
    assert tracker.current() is None
    second = spawn_child(marker=first.marker)

    tracker.refresh()

    assert tracker.current() is not None and tracker.current().pid == second.pid
    assert tracker.restarts == 1


def test_a_pid_matcher_does_not_follow_a_restart(spawn_child):
    child = spawn_child()
    tracker = ProcessTracker(PidMatcher(child.pid), scan_interval_seconds=0.0)
    assert tracker.current() is not None

    child.kill()

    assert tracker.current() is None
    assert tracker.restarts == 0


def test_a_pidfile_matcher_follows_the_pid_written_in_the_file(spawn_child, tmp_path):
    pidfile = tmp_path / "service.pid"
    tracker = ProcessTracker(PidfileMatcher(pidfile), scan_interval_seconds=0.0)
    assert tracker.current() is None  # no file yet

    first = spawn_child()
    pidfile.write_text(f"{first.pid}\n")
    assert tracker.current().pid == first.pid

    first.kill()
    assert tracker.current() is None  # the file still names the dead PID
    second = spawn_child()
    pidfile.write_text(f"{second.pid}\n")

    assert tracker.current().pid == second.pid
    assert tracker.restarts == 1


def test_a_pidfile_with_garbage_matches_nothing(tmp_path):
    pidfile = tmp_path / "service.pid"
    pidfile.write_text("not a pid\n")

    assert PidfileMatcher(pidfile).find() is None
    pidfile.write_text(f"{os.getpid()}\n")
    assert PidfileMatcher(pidfile).find() == os.getpid()


def test_a_recent_liveness_check_is_trusted_only_within_max_age(spawn_child):
    now = [0.0]
    child = spawn_child()
    tracker = ProcessTracker(
        CmdlineMatcher(child.marker), scan_interval_seconds=0.0, clock=lambda: now[0]
    )
    assert tracker.current() is not None

    child.kill()
    now[0] = 0.5
    assert tracker.current(max_age_seconds=1.0) is not None  # trusted: checked 0.5 s ago
    assert tracker.current() is None  # checked now: gone
    now[0] = 0.6
    assert tracker.current(max_age_seconds=1.0) is None


def test_matchers_in_one_scan_round_share_one_listing_of_processes(spawn_child):
    with scan_round():
        assert CmdlineMatcher("soakwatch-test-late-[0-9a-f]{12}").find() is None  # lists now
        late = spawn_child(marker=f"soakwatch-test-late-{uuid.uuid4().hex[:12]}")
        assert CmdlineMatcher(late.marker).find() is None  # the round's listing predates it

    assert CmdlineMatcher(late.marker).find() == late.pid


def test_cmdline_matcher_never_matches_an_ancestor_of_the_exporter():
    parent = psutil.Process().parent()
    assert parent is not None
    pattern = f"^{re.escape(' '.join(parent.cmdline()))}$"

    # without the exclusion the pattern matches: the parent, or another process with its very
    # command line (a shell that started several test runs)
    found = CmdlineMatcher(pattern, exclude_pids=frozenset()).find()
    assert found is not None
    assert found == parent.pid or psutil.Process(found).cmdline() == parent.cmdline()
    ancestors = {p.pid for p in psutil.Process().parents()}
    twins = {
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"] == parent.cmdline() and p.pid not in ancestors
    }
    excluded = CmdlineMatcher(pattern).find()
    assert excluded is None if not twins else excluded in twins


def test_the_exporter_started_by_a_shell_holding_the_pattern_watches_the_service(
    spawn_child, tmp_path
):
    marker = f"soakwatch-test-{uuid.uuid4().hex[:12]}"
    # 'sh -c "soak-exporter --match X; true"': the shell stays, its command line matches X
    script = f"{EXPORTER} --match {marker} --service demo --listen 127.0.0.1:0; true"
    shell = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert shell.stdout is not None
        line = shell.stdout.readline()
        url = line.split("serving ", 1)[1].split()[0]

        def up_and_start() -> tuple[float | None, float | None]:
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
            found = {
                s.name: s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
                if s.labels.get("service") == "demo"
            }
            return found.get("soak_process_up"), found.get("soak_process_start_time_seconds")

        assert up_and_start() == (0, None)  # the shell is not the service
        child = spawn_child(marker=marker)
        deadline = time.monotonic() + 30
        while (seen := up_and_start())[0] != 1:
            assert time.monotonic() < deadline, seen
            time.sleep(0.2)
        assert seen[1] == psutil.Process(child.pid).create_time()
    finally:
        for process in psutil.Process(shell.pid).children(recursive=True):
            process.terminate()
        shell.wait(timeout=15)
        if shell.stdout is not None:
            shell.stdout.close()


def test_members_are_the_matched_process_and_its_descendants_numbered_in_order(spawn_child):
    launcher = (
        "import subprocess, sys\n"
        "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])"
        " for _ in range(2)]\n"
    )
    parent = spawn_child(launcher)
    tracker = ProcessTracker(
        CmdlineMatcher(parent.marker, children="sum"), scan_interval_seconds=0.0
    )
    members = tracker.members()
    kids = sorted(psutil.Process(parent.pid).children(), key=lambda p: (p.create_time(), p.pid))

    assert [(m.label, m.identity[0]) for m in members] == [
        ("0", parent.pid),
        ("1", kids[0].pid),
        ("2", kids[1].pid),
    ]
    # member 1 exits and is replaced: the newcomer takes number 1, a restart of that member
    parent.run("kids[0].kill(); kids[0].wait(); kids[0] = subprocess.Popen(kids[1].args)")
    members = tracker.members()
    assert [m.label for m in members] == ["0", "1", "2"]
    assert members[1].identity[0] not in {kids[0].pid, kids[1].pid}
    assert tracker.member_restarts == {"1": 1, "2": 0}
    assert tracker.restarts == 0
    # a matcher with children: none sees the matched process alone, as before
    alone = ProcessTracker(CmdlineMatcher(parent.marker), scan_interval_seconds=0.0)
    assert [m.label for m in alone.members()] == ["0"]
    parent.run("[k.kill() for k in kids]; [k.wait() for k in kids]")
    assert [m.label for m in tracker.members()] == ["0"]


def test_a_matcher_rejects_an_unknown_children_mode():
    with pytest.raises(ValueError, match="children must be one of none, sum, each, got 'all'"):
        CmdlineMatcher("x", children="all")  # type: ignore[arg-type]  # the wrong value on purpose

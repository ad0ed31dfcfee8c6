"""What the exporter keeps between scrapes to make them cheap (the process tree, the members'
process objects, the start ticks of the matched process) never hides a change: a worker that
appears or exits between two scrapes is seen on the next one, and a PID that now names another
process is not taken for the one watched before."""

from __future__ import annotations

import psutil
import pytest
from prometheus_client import CollectorRegistry

from soakwatch.exporter.matching import CmdlineMatcher, ProcessTracker, scan_round
from soakwatch.exporter.process import ProcessCollector, read_proc_stat

LAUNCHER = (
    "import subprocess, sys\n"
    "SLEEP = [sys.executable, '-c', 'import time; time.sleep(600)']\n"
    "kids = [subprocess.Popen(SLEEP)]\n"
)


def scrape(registry: CollectorRegistry, name: str) -> float | None:
    # a scrape of the sidecar runs its collectors inside one scan round, as here
    with scan_round():
        return registry.get_sample_value(name, {"service": "demo"})


def sum_tracker(marker: str) -> ProcessTracker:
    return ProcessTracker(CmdlineMatcher(marker, children="sum"), scan_interval_seconds=0.0)


def test_a_worker_that_appears_or_exits_between_scrapes_is_seen_on_the_next(spawn_child, registry):
    parent = spawn_child(LAUNCHER)
    ProcessCollector({"demo": sum_tracker(parent.marker)}, registry=registry)

    assert scrape(registry, "soak_process_workers") == 1
    parent.run("kids.append(subprocess.Popen(SLEEP))")
    assert scrape(registry, "soak_process_workers") == 2
    parent.run("kids[0].kill(); kids[0].wait()")
    assert scrape(registry, "soak_process_workers") == 1
    parent.run("[k.kill() for k in kids]; [k.wait() for k in kids]")
    assert scrape(registry, "soak_process_workers") == 0


def test_a_grandchild_is_a_member_and_a_zombie_worker_is_not(spawn_child):
    launcher = LAUNCHER + (
        "inner = ['-c', 'import subprocess, sys, time; "
        'subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]); '
        "time.sleep(600)']\n"
        "kids.append(subprocess.Popen([sys.executable, *inner]))\n"
        "import time\n"
        "while len(__import__('psutil').Process().children(recursive=True)) < 3: time.sleep(0.05)\n"
    )
    parent = spawn_child(launcher)
    tracker = sum_tracker(parent.marker)
    expected = {p.pid for p in psutil.Process(parent.pid).children(recursive=True)}

    assert len(expected) == 3
    assert {m.identity[0] for m in tracker.members()[1:]} == expected
    # killed but not reaped: a zombie, which psutil's children() lists and a member is not
    parent.run("kids[0].kill(); import time; time.sleep(0.3)")
    zombie_pid = next(
        p.pid for p in psutil.Process(parent.pid).children() if p.status() == psutil.STATUS_ZOMBIE
    )
    assert zombie_pid not in {m.identity[0] for m in tracker.members()}


def test_a_known_pid_with_another_start_time_is_a_new_process(spawn_child):
    parent = spawn_child(LAUNCHER)
    tracker = sum_tracker(parent.marker)
    member = tracker.members()[1]
    pid, start = member.identity
    # As after a PID reuse: the cache holds this PID for a process that started earlier.
    stale = tracker._known[pid]
    impostor = object()
    tracker._known[pid] = (stale[0] - 100, (pid, start - 1.0), impostor)

    again = tracker.members()[1]

    assert again.identity == (pid, start) == (pid, psutil.Process(pid).create_time())
    assert again.process is not impostor and again.process.pid == pid


def test_a_matched_pid_whose_start_time_changed_is_picked_up_as_a_restart(spawn_child):
    child = spawn_child()
    tracker = ProcessTracker(CmdlineMatcher(child.marker), scan_interval_seconds=0.0)
    assert tracker.current() is not None
    # As after a PID reuse: /proc/PID/stat now shows another start time than when found.
    assert tracker._start_ticks is not None
    tracker._start_ticks -= 100

    assert tracker.current() is not None
    assert tracker.restarts == 0  # the same (pid, create time) found again: not a restart
    with open(f"/proc/{child.pid}/stat", "rb") as handle:
        ticks = int(handle.read().rsplit(b")", 1)[1].split()[19])
    assert tracker._start_ticks == ticks  # read again from the process now there


def test_members_within_max_age_are_the_last_listing_and_fresh_after(spawn_child):
    parent = spawn_child(LAUNCHER)
    now = [0.0]
    tracker = ProcessTracker(
        CmdlineMatcher(parent.marker, children="sum"),
        scan_interval_seconds=0.0,
        clock=lambda: now[0],
    )
    assert len(tracker.members()) == 2
    parent.run("kids.append(subprocess.Popen(SLEEP))")

    assert len(tracker.members(max_age_seconds=1.0)) == 2
    now[0] = 1.5
    assert len(tracker.members(max_age_seconds=1.0)) == 3


def test_proc_stat_counters_are_the_ones_psutil_reads(spawn_child):
    child = spawn_child(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
        "block = bytearray(32 * 1024 * 1024)"
    )
    process = psutil.Process(child.pid)

    with process.oneshot():
        memory, times, threads = process.memory_info(), process.cpu_times(), process.num_threads()
    counters = read_proc_stat(child.pid)

    assert counters is not None
    assert counters["rss"] == memory.rss and counters["vms"] == memory.vms
    assert counters["cpu"] == (times.user, times.system)
    assert counters["threads"] == threads == 2


def test_proc_stat_of_a_gone_process_is_none(spawn_child):
    child = spawn_child()
    pid = child.pid
    child.kill()

    assert read_proc_stat(pid) is None


@pytest.mark.parametrize("children", ["sum", "each"])
def test_one_scrape_of_many_groups_reads_the_process_tree_once(spawn_child, children, monkeypatch):
    from soakwatch.exporter import matching

    parents = [spawn_child(LAUNCHER) for _ in range(3)]
    trackers = {
        f"demo{i}": ProcessTracker(
            CmdlineMatcher(p.marker, children=children), scan_interval_seconds=0.0
        )
        for i, p in enumerate(parents)
    }
    registry = CollectorRegistry()
    ProcessCollector(trackers, registry=registry)
    reads = []
    real = matching._read_process_tree
    monkeypatch.setattr(matching, "_read_process_tree", lambda: reads.append(1) or real())

    families = {f.name: f for f in registry.collect()}

    assert len(reads) == 1
    assert [s.value for s in families["soak_process_workers"].samples] == [1, 1, 1]


def test_a_pid_cached_for_another_process_is_read_again_at_the_next_full_pass(
    spawn_child, monkeypatch
):
    from soakwatch.exporter import matching

    parent = spawn_child(LAUNCHER)
    tracker = sum_tracker(parent.marker)
    assert len(tracker.members()) == 2
    parent.run("kids.append(subprocess.Popen(SLEEP))")
    kids = {p.pid for p in psutil.Process(parent.pid).children()}
    newcomer = max(kids - {m.identity[0] for m in tracker.members(max_age_seconds=60)})
    # As if that PID had belonged to an unrelated process at the last pass (a reused PID):
    # between full passes its stat file is not read again, so it is not a member yet ...
    monkeypatch.setattr(matching, "FULL_TREE_SECONDS", 3600.0)
    matching._TREE.read()
    ticks = matching._TREE._stat[newcomer][1]
    matching._TREE._stat[newcomer] = (1, ticks, b"S")
    matching._TREE._watched.discard(newcomer)
    assert newcomer not in {m.identity[0] for m in tracker.members()}
    # ... and it is at the next full pass, FULL_TREE_SECONDS after the last one.
    matching._TREE.forget()
    assert newcomer in {m.identity[0] for m in tracker.members()}

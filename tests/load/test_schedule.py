"""The open-model schedule: counts, stage shape and shards."""

from __future__ import annotations

import itertools

import pytest

from soakwatch.load.schedule import Schedule, Stages, shard_share


def test_a_steady_rate_schedules_rate_times_duration_events_evenly_spaced() -> None:
    times = list(Schedule(200, Stages(0, 5, 0)).due_times())
    assert len(times) == 1000
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(times)}
    assert gaps == {0.005}
    assert times[0] > 0 and times[-1] < 5


def test_ramps_send_half_the_full_rate_on_average_and_follow_the_stage_shape() -> None:
    schedule = Schedule(100, Stages(10, 10, 10))
    times = list(schedule.due_times())
    assert len(times) == schedule.expected_events() == 2000  # 500 + 1000 + 500
    in_first_second = sum(1 for t in times if t < 1)
    in_steady_second = sum(1 for t in times if 15 <= t < 16)
    assert in_first_second == 5  # rate climbs from 0 to 10/s in the first second
    assert in_steady_second == 100
    assert times == sorted(times)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_split_the_full_schedule_without_overlap_or_gaps(count: int) -> None:
    stages = Stages(2, 5, 2)
    full = list(Schedule(50, stages).due_times())
    parts = [list(Schedule(50, stages, (i, count)).due_times()) for i in range(count)]
    assert sorted(t for part in parts for t in part) == full
    assert [len(p) for p in parts] == [Schedule(50, stages, (i, count)).expected_events()
                                       for i in range(count)]  # fmt: skip


def test_shard_shares_of_whole_connections_add_up_to_the_total() -> None:
    assert [shard_share(10, (i, 4)) for i in range(4)] == [2, 3, 2, 3]
    assert sum(shard_share(10_001, (i, 7)) for i in range(7)) == 10_001


def test_the_stage_fraction_rises_holds_and_falls() -> None:
    stages = Stages(10, 20, 10)
    assert [stages.fraction(t) for t in (0, 5, 10, 25, 35, 40)] == [0, 0.5, 1, 1, 0.5, 0]
    assert stages.area(40) == pytest.approx(30)
    assert stages.time_at_area(stages.area(33.3)) == pytest.approx(33.3)

"""The per-rule indexes of evaluate.py find what a scan of every series per subject found.

A slope rule looks up each subject's start-time, restarts and up series, and the restarts
and counter-ratio rules each subject's series of another role. These were scans of every
series for every subject; now each role is indexed once per rule. The indexes are checked
here against the scan they replace, on random label sets built to hit their edges: shared
label names that differ per candidate, candidates without a label the target has, ties
between equally good candidates (the first one wins), and no match at all."""

from __future__ import annotations

import numpy as np
import pytest

from soakwatch.analyzer import evaluate
from soakwatch.analyzer.series import Series, subject_of

NAMES = ("service", "instance", "job", "pod", "pool")


def scan(target: Series, candidates: list[Series]) -> Series | None:
    """The scan the index replaces: all shared labels equal, most shared labels wins."""
    best, best_shared = None, -1
    for c in candidates:
        shared = set(c.labels) & set(target.labels)
        if all(c.labels[k] == target.labels[k] for k in shared) and len(shared) > best_shared:
            best, best_shared = c, len(shared)
    return best


def labels(rng: np.random.Generator) -> dict[str, str]:
    names = [n for n in NAMES if rng.random() < 0.6]
    return {n: f"{n}{int(rng.integers(0, 3))}" for n in names}


def series(name: str, tags: dict[str, str]) -> Series:
    return Series(name, tags, np.arange(3.0), np.zeros(3))


@pytest.mark.parametrize("seed", range(50))
def test_the_companion_index_finds_what_the_scan_of_every_candidate_found(seed: int) -> None:
    rng = np.random.default_rng(seed)
    candidates = [series("start", labels(rng)) for _ in range(int(rng.integers(0, 30)))]
    if candidates and seed % 3 == 0:
        candidates += [series("start", dict(candidates[0].labels))]  # a tie: the first wins
    index = evaluate._Companions(candidates)
    for _ in range(20):
        target = series("value", labels(rng))
        assert index.of(target) is scan(target, candidates)


def test_a_target_with_no_matching_candidate_has_no_companion() -> None:
    index = evaluate._Companions([series("start", {"service": "a", "instance": "i1"})])
    assert index.of(series("value", {"service": "b"})) is None
    assert evaluate._Companions([]).of(series("value", {"service": "a"})) is None


@pytest.mark.parametrize("seed", range(20))
def test_series_by_subject_are_those_a_filter_of_every_series_kept_in_order(seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = {"numerator": [series("n", labels(rng)) for _ in range(int(rng.integers(0, 40)))]}
    grouped = evaluate._BySubject(data)
    group_by = ("service", "pool")
    for s in data["numerator"] + [series("x", labels(rng)) for _ in range(5)]:
        subject = subject_of(s.labels, group_by)
        expected = [c for c in data["numerator"] if subject_of(c.labels, group_by) == subject]
        found = grouped.of("numerator", group_by, subject)
        assert len(found) == len(expected) and all(
            a is b for a, b in zip(found, expected, strict=True)
        )
    assert grouped.of("denominator", group_by, (("service", "a"),)) == []

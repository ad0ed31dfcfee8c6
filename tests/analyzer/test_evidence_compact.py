"""The report's evidence is kept compact (issue 16: at 1,000 services every judged series
held for the plots was 285 MB): a long series is reduced to the first, lowest, highest and
last sample of each plot column, so its plot is the full series' plot, spikes and sawtooth
drops included, and a counter's increase through resets is that of every sample."""

from __future__ import annotations

import io

import numpy as np
import pytest

from soakwatch.analyzer import html, report
from soakwatch.analyzer.counters import counter_increase
from soakwatch.analyzer.report import EVIDENCE_BUCKETS, Evidence, Result, compact_series

START = 1_764_000_000.0
STEP = 15.0
SAMPLES = 11_520  # 48 h at 15 s


def _sawtooth() -> tuple[np.ndarray, np.ndarray]:
    """Memory that climbs and drops every 7.5 min (a GC sawtooth, 384 drops) over a slow leak,
    with one 40 MB spike of a single sample and one single-sample dip."""
    rng = np.random.default_rng(3)
    t = START + STEP * np.arange(SAMPLES)
    v = 200e6 + 5e6 * ((t - START) % 450.0) / 450.0 + (t - START) * 30.0
    v += rng.normal(0.0, 2e5, SAMPLES)
    v[4321] += 40e6
    v[9000] -= 30e6
    return t, v


def _per_bucket(t: np.ndarray, v: np.ndarray, extreme: np.ufunc) -> np.ndarray:
    bucket = np.minimum(((t - START) / (t[-1] - START) * EVIDENCE_BUCKETS).astype(int), 799)
    out = np.full(EVIDENCE_BUCKETS, np.nan)
    for b in range(EVIDENCE_BUCKETS):
        out[b] = extreme.reduce(v[bucket == b])
    return out


def test_a_long_series_keeps_the_lowest_and_highest_sample_of_every_plot_column() -> None:
    t, v = _sawtooth()
    kept_t, kept_v = compact_series(t, v)
    assert kept_t.size <= 4 * EVIDENCE_BUCKETS < SAMPLES
    assert np.all(np.diff(kept_t) > 0)
    # every kept sample is a real one, at its own time
    index = np.searchsorted(t, kept_t)
    assert np.array_equal(t[index], kept_t) and np.array_equal(v[index], kept_v)
    for extreme in (np.minimum, np.maximum):
        assert np.array_equal(_per_bucket(kept_t, kept_v, extreme), _per_bucket(t, v, extreme)), (
            extreme
        )
    assert t[4321] in kept_t and t[9000] in kept_t  # the spike and the dip


def test_a_counter_keeps_its_increase_through_resets_from_any_span_edge() -> None:
    rng = np.random.default_rng(5)
    t = START + STEP * np.arange(SAMPLES)
    v = np.cumsum(rng.integers(0, 50, SAMPLES)).astype(np.float64) + 1.5e9
    for reset in (2000, 2003, 7000):  # restarts: the counter starts again from (near) zero
        v[reset:] -= v[reset] - rng.integers(0, 10)
    warmup_end = START + 3601.0
    evidence = Evidence(series=[("requests", t, v)], spans=[("warm-up", START, warmup_end)])
    ((_label, kept_t, kept_v),) = evidence.series
    assert kept_t.size < SAMPLES / 3
    for begin in (START, warmup_end):
        assert counter_increase(kept_t, kept_v, begin, t[-1]) == counter_increase(
            t, v, begin, t[-1]
        )


def test_values_are_held_as_float32_only_where_that_is_exact() -> None:
    t = START + 60.0 * np.arange(1440)
    counts = np.arange(1440, dtype=np.float64) * 7.0 + 3.0  # fds, threads, restarts
    seconds = np.cumsum(np.full(1440, 0.1))  # CPU seconds: not float32 numbers
    evidence = Evidence(series=[("fds", t, counts), ("cpu", t, seconds)])
    (_a, t1, v1), (_b, t2, v2) = evidence.series
    assert v1.dtype == np.float32 and np.array_equal(v1, counts)
    assert v2.dtype == np.float64 and np.array_equal(v2, seconds)
    assert t1 is t and t2 is t  # short series keep their (shared) times array


def test_a_series_with_nan_samples_is_kept_whole() -> None:
    t, v = _sawtooth()
    v[10] = np.nan
    kept_t, kept_v = compact_series(t, v)
    assert kept_t.size == SAMPLES and np.array_equal(kept_v, v, equal_nan=True)


def _pixels(evidence_series: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    pytest.importorskip("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    result = Result("memory_growth", "slope", {"service": "api"}, "fail", 1.0, "MB/h", 2.0, "<", "")
    t, v = evidence_series
    evidence = Evidence(series=[("service=api", t, v)], y_label="soak_rss_bytes")
    figure = html._figure(result, evidence, START, float(t[-1]))
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    buffer = io.BytesIO()
    canvas.print_raw(buffer)
    width, height = canvas.get_width_height()
    return np.frombuffer(buffer.getvalue(), np.uint8).reshape(height, width, 4)[..., :3]


def test_the_plot_of_the_compact_series_is_the_plot_of_every_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    series = _sawtooth()
    compact = _pixels(series)
    # the reference: every sample drawn (no reduction here, none in the plot either)
    monkeypatch.setattr(report, "EVIDENCE_BUCKETS", SAMPLES)
    monkeypatch.setattr(html, "MAX_PLOTTED_POINTS", SAMPLES)
    full = _pixels(series)
    differ = np.any(np.abs(compact.astype(int) - full.astype(int)) > 48, axis=2)
    assert differ.mean() < 0.005, differ.mean()
    # and the old plot, every third sample, did lose the spike: the check can fail
    monkeypatch.setattr(html, "MAX_PLOTTED_POINTS", 4000)
    thinned = _pixels(series)
    lost = np.any(np.abs(thinned.astype(int) - full.astype(int)) > 48, axis=2)
    assert lost.mean() > differ.mean()


def _m4_by_hand(t: np.ndarray, v: np.ndarray, edges: list[float]) -> np.ndarray:
    """The samples M4 keeps, bucket by bucket in plain Python: first, last, the first at the
    lowest and the first at the highest value; both sides of every drop (at most 256) and of
    every edge."""
    bucket = np.minimum(((t - t[0]) * (EVIDENCE_BUCKETS / (t[-1] - t[0]))).astype(int), 799)
    kept: set[int] = set()
    for b in np.unique(bucket):
        members = np.flatnonzero(bucket == b)
        values = v[members]
        kept |= {members[0], members[-1]}
        kept |= {members[np.argmin(values)], members[np.argmax(values)]}
    drops = [i for i in range(t.size - 1) if v[i + 1] < v[i]]
    if len(drops) <= report.EVIDENCE_RESETS:
        kept |= {i for d in drops for i in (d, d + 1)}
    for edge in edges:
        after = int(np.searchsorted(t, edge))
        kept |= {min(max(i, 0), t.size - 1) for i in (after - 1, after)}
    return np.array(sorted(kept))


@pytest.mark.parametrize("seed", range(6))
def test_the_kept_samples_are_exactly_those_m4_and_the_edges_name(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.unique(START + rng.uniform(0.0, 48 * 3600.0, int(rng.integers(3300, 20_000))))
    # whole values with many ties (so "the first at its extreme" matters), some drops
    v = np.round(rng.normal(0.0, 2.0, t.size)) + np.arange(t.size) // 500
    if seed % 2:
        v = np.maximum.accumulate(v)  # a counter: few drops, all kept
        v[t.size // 3 :] -= 50.0
    edges = list(rng.uniform(t[0] - 60.0, t[-1] + 60.0, 3))
    kept_t, kept_v = compact_series(t, v, edges)
    expected = _m4_by_hand(t, v, edges)
    assert np.array_equal(kept_t, t[expected]) and np.array_equal(kept_v, v[expected])

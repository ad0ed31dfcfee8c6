"""The in-process GC collector counts exactly what the cyclic collector does."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from soakwatch.exporter.gc_collector import GcCollector, examined_supported

pytestmark = pytest.mark.skipif(not examined_supported(), reason="CPython 3.10-3.13 GC only")


@pytest.fixture
def gc_off() -> Iterator[None]:
    """Collections happen only when the test asks (like client_python's test_gc_collector)."""
    was_enabled = gc.isenabled()
    gc.disable()
    gc.collect()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def value(registry: CollectorRegistry, name: str, generation: int, **extra: str) -> float | None:
    labels = {"service": "svc", "generation": str(generation), **extra}
    return registry.get_sample_value(name, labels)


def make_cycles(count: int) -> None:
    for _ in range(count):
        a: list[object] = []
        a.append(a)


def test_collections_and_collected_objects_grow_by_exactly_the_cycles_made(gc_off: None) -> None:
    registry = CollectorRegistry()
    GcCollector("svc", registry=registry)
    assert value(registry, "soak_gc_collections_total", 0) == 0
    make_cycles(2)
    gc.collect(0)
    assert value(registry, "soak_gc_collections_total", 0) == 1
    assert value(registry, "soak_gc_collected_objects_total", 0) == 2
    assert value(registry, "soak_gc_collections_total", 2) == 0
    make_cycles(3)
    gc.collect()
    assert value(registry, "soak_gc_collections_total", 2) == 1
    assert value(registry, "soak_gc_collected_objects_total", 2) == 3


def test_examined_objects_of_a_full_collection_are_all_tracked_objects(gc_off: None) -> None:
    registry = CollectorRegistry()
    GcCollector("svc", registry=registry)
    keep = [[i] for i in range(5000)]
    tracked = len(gc.get_objects())
    gc.collect()
    examined = value(registry, "soak_gc_examined_objects_total", 2)
    assert examined is not None
    assert abs(examined - tracked) <= 20, (examined, tracked)
    assert len(keep) == 5000
    assert (
        gc.get_freeze_count() == 0
    )  # the count borrowed the permanent generation and gave it back


def test_examined_objects_of_a_young_collection_are_the_young_generation(gc_off: None) -> None:
    registry = CollectorRegistry()
    GcCollector("svc", registry=registry, young_sample_every=1)
    keep = [[i] for i in range(800)]
    young = len(gc.get_objects(generation=0))
    gc.collect(0)
    examined = value(registry, "soak_gc_examined_objects_total", 0)
    assert examined is not None
    assert abs(examined - young) <= 5, (examined, young)
    assert young >= 800
    assert len(keep) == 800


def examined(collector: GcCollector, generation: int) -> float:
    return sum(
        sample.value
        for family in collector.collect()
        for sample in family.samples
        if sample.name == "soak_gc_examined_objects_total"
        and sample.labels["generation"] == str(generation)
    )


def test_sampled_young_counts_add_up_to_the_exact_ones_over_many_collections(
    gc_off: None,
) -> None:
    sampled = GcCollector("svc", registry=None)
    exact = GcCollector("svc", registry=None, young_sample_every=1)
    keep = []
    for round_ in range(400):  # 50 blocks of 8 generation-0 collections, 10 of generation 1
        keep.append([[round_, i] for i in range(50 + round_ % 7)])
        gc.collect(0)
        if round_ % 5 == 4:
            gc.collect(1)
    sampled.close()
    exact.close()
    for generation, minimum in ((0, 400 * 50), (1, 80 * 200)):
        estimate, truth = examined(sampled, generation), examined(exact, generation)
        assert truth > minimum
        assert abs(estimate / truth - 1) < 0.05, (generation, estimate, truth)


def test_examined_objects_of_a_generation_1_collection_include_generation_0(
    gc_off: None,
) -> None:
    collector = GcCollector("svc", registry=None, young_sample_every=1)
    old = [[i] for i in range(300)]
    gc.collect(0)  # now in generation 1
    new = [[i] for i in range(200)]
    young = len(gc.get_objects(generation=0)) + len(gc.get_objects(generation=1))
    gc.collect(1)
    assert abs(examined(collector, 1) - young) <= 5, (examined(collector, 1), young)
    assert young >= 500 and len(old) + len(new) == 500
    collector.close()


def test_objects_the_service_froze_stay_frozen(gc_off: None) -> None:
    registry = CollectorRegistry()
    GcCollector("svc", registry=registry)
    frozen = [[i] for i in range(1000)]
    gc.freeze()
    try:
        frozen_count = gc.get_freeze_count()
        gc.collect()
        assert gc.get_freeze_count() == frozen_count
        examined = value(registry, "soak_gc_examined_objects_total", 2)
        assert examined is not None and examined < len(gc.get_objects()) + 20
    finally:
        gc.unfreeze()
    assert len(frozen) == 1000


def test_pause_histogram_counts_every_collection(gc_off: None) -> None:
    registry = CollectorRegistry()
    GcCollector("svc", registry=registry)
    for _ in range(3):
        gc.collect(1)
    assert value(registry, "soak_gc_pause_seconds_count", 1) == 3
    assert value(registry, "soak_gc_pause_seconds_bucket", 1, le="+Inf") == 3
    pause_sum = value(registry, "soak_gc_pause_seconds_sum", 1)
    assert pause_sum is not None and 0 < pause_sum < 3.0
    assert value(registry, "soak_gc_pause_seconds_count", 0) == 0


def test_closing_the_collector_removes_its_callback_and_its_series(gc_off: None) -> None:
    registry = CollectorRegistry()
    collector = GcCollector("svc", registry=registry)
    callbacks = len(gc.callbacks)
    collector.close()
    assert len(gc.callbacks) == callbacks - 1
    assert value(registry, "soak_gc_collections_total", 0) is None
    gc.collect()
    assert all(
        sample.value == 0
        for family in collector.collect()
        for sample in family.samples
        if sample.name == "soak_gc_collections_total"
    )


def test_a_second_collector_in_the_same_registry_is_refused_without_leaking_a_callback() -> None:
    registry = CollectorRegistry()
    first = GcCollector("svc", registry=registry)
    callbacks = len(gc.callbacks)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        GcCollector("svc", registry=registry)
    assert len(gc.callbacks) == callbacks
    first.close()

"""The rules spec is loaded once into a frozen model; every mistake names the file and key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from soakwatch.errors import ConfigError
from soakwatch.rules.model import (
    DEFAULT_RULES_PATH,
    LabelMatcher,
    MetricSelector,
    load_rules,
    parse_selector,
)

MINIMAL_RULE = """
version: 1
rules:
  memory_growth:
    kind: slope
    metrics: {value: soak_process_resident_memory_bytes}
    threshold: 2
    unit: MB/h
    comparison: "<"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "soak.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_packaged_spec_loads_with_every_rule_of_the_design() -> None:
    ruleset = load_rules()
    assert ruleset.version == 1
    assert ruleset.names() == (
        "memory_growth",
        "gc_efficiency",
        "pool_variation",
        "latency_degradation",
        "error_ratio",
        "restarts",
        "probe_failures",
        "fd_growth",
        "handle_growth",
        "thread_growth",
        "cpu_per_request",
        "throughput",
    )
    memory = ruleset.rules["memory_growth"]
    assert memory.metrics["value"].promql() == "soak_process_resident_memory_bytes"
    assert memory.threshold_base == 2e6 and memory.base_unit == "bytes/hour"
    assert memory.warmup_auto and memory.required
    assert ruleset.rules["gc_efficiency"].comparison == ">="
    assert ruleset.rules["latency_degradation"].quantile == 0.95
    assert ruleset.source == str(DEFAULT_RULES_PATH)


def test_the_model_is_frozen() -> None:
    rule = load_rules().rules["memory_growth"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.threshold = 5  # type: ignore[misc]


def test_a_per_service_override_changes_only_what_it_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL_RULE + "    window: 5m\n    services:\n      api: {threshold: 8, warmup: 30m}\n",
    )
    rule = load_rules(path).rules["memory_growth"]
    api = rule.for_service("api")
    assert (api.threshold, api.warmup_seconds, api.warmup_auto) == (8, 1800.0, False)
    assert api.window_seconds == 300.0
    assert rule.for_service("web") is rule


def test_selectors_parse_into_name_and_matchers() -> None:
    selector = parse_selector('soak_load_requests_total{outcome!="ok", scenario=~"api.*"}')
    assert selector == MetricSelector(
        "soak_load_requests_total",
        (LabelMatcher("outcome", "!=", "ok"), LabelMatcher("scenario", "=~", "api.*")),
    )
    assert selector.promql((LabelMatcher("service", "=", "a"),)) == (
        'soak_load_requests_total{outcome!="ok",scenario=~"api.*",service="a"}'
    )
    assert selector.matches({"outcome": "error", "scenario": "api1"})
    assert not selector.matches({"outcome": "ok", "scenario": "api1"})


def test_passes_follows_the_comparison_in_base_units() -> None:
    rules = load_rules().rules
    assert rules["memory_growth"].passes(1.9e6) and not rules["memory_growth"].passes(2e6)
    assert rules["gc_efficiency"].passes(0.3) and not rules["gc_efficiency"].passes(0.29)


def test_selecting_an_unknown_rule_is_an_error_that_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown rule\\(s\\) memory; known: memory_growth"):
        load_rules().select(["memory"])
    assert load_rules().select(["restarts"]).names() == ("restarts",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MINIMAL_RULE.replace("version: 1", "version: 2"), "version: unsupported version 2"),
        (MINIMAL_RULE + "    treshold: 3\n", "rules.memory_growth.treshold: unknown key"),
        (MINIMAL_RULE.replace("kind: slope", "kind: line"), "rules.memory_growth.kind: must be"),
        (MINIMAL_RULE.replace("MB/h", "percent"), "rules.memory_growth.unit: a slope rule"),
        (
            MINIMAL_RULE.replace("{value: soak_process_resident_memory_bytes}", "{val: x}"),
            "rules.memory_growth.metrics.value: required key is missing",
        ),
        (
            MINIMAL_RULE.replace("soak_process_resident_memory_bytes", "'x{a=b}'"),
            "rules.memory_growth.metrics.value: bad label matcher",
        ),
        (
            MINIMAL_RULE + "    services:\n      api: {thresold: 1}\n",
            "rules.memory_growth.services.api.thresold: unknown key",
        ),
        (MINIMAL_RULE + "    window: soon\n", "rules.memory_growth.window: not a duration"),
        ("version: 1\nrules: {}\n", "rules: no rules defined"),
    ],
)
def test_a_bad_spec_is_rejected_with_the_file_and_key_path(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_limit_sliding_window_and_baseline_are_parsed_into_the_model(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL_RULE
        + "    limit: 2GiB\n    sliding_window: 6h\n"
        + "    baseline: {max_change: 10, unit: percent, runs: 3}\n",
    )
    rule = load_rules(path).rules["memory_growth"]
    assert rule.limit == 2 * 1024**3
    assert rule.sliding_window_seconds == 6 * 3600
    assert rule.baseline is not None and rule.baseline.max_change == pytest.approx(0.1)
    assert rule.baseline.runs == 3


def test_a_limit_on_a_rule_that_is_not_a_slope_is_rejected(tmp_path: Path) -> None:
    text = MINIMAL_RULE.replace("kind: slope", "kind: variation").replace("MB/h", "percent")
    with pytest.raises(ConfigError, match=r"rules\.memory_growth\.limit: not used by a variation"):
        load_rules(write(tmp_path, text + "    limit: 1GB\n"))


def test_the_pool_rule_sums_the_open_states_of_each_pool() -> None:
    rule = load_rules().rules["pool_variation"]
    assert rule.group_by == ("service", "pool")
    assert rule.sum_over == ("state",)
    selector = rule.metrics["value"]
    assert selector.matches({"state": "in_use"}) and selector.matches({"state": "established"})
    assert not selector.matches({"state": "close_wait"})


VARIATION_RULE = MINIMAL_RULE.replace("kind: slope", "kind: variation").replace("MB/h", "percent")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MINIMAL_RULE + "    sum_over: [state]\n", "sum_over: not used by a slope rule"),
        (VARIATION_RULE + "    sum_over: [service]\n", "sum_over: 'service' is also in group_by"),
        (VARIATION_RULE + "    sum_over: [st-ate]\n", "sum_over: not a label name"),
        (VARIATION_RULE + "    sum_over: {state: 1}\n", "sum_over: expected a list of strings"),
    ],
)
def test_a_misplaced_or_malformed_sum_over_is_rejected(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=rf"rules\.memory_growth\.{message}"):
        load_rules(write(tmp_path, text))


def test_min_increase_on_a_rule_that_is_not_a_quantile_change_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL_RULE + "    min_increase: 5ms\n")
    with pytest.raises(ConfigError) as raised:
        load_rules(path)
    assert (
        str(raised.value) == f"{path}: rules.memory_growth.min_increase: not used by a slope rule"
    )


def test_min_increase_is_a_duration_in_seconds_and_defaults_to_no_floor(tmp_path: Path) -> None:
    assert load_rules().rules["latency_degradation"].min_increase_seconds == pytest.approx(0.005)
    text = MINIMAL_RULE.replace("kind: slope", "kind: quantile_change")
    text = text.replace("{value: soak_process_resident_memory_bytes}", "{histogram: soak_x}")
    text = text.replace("MB/h", "percent")
    assert load_rules(write(tmp_path, text)).rules["memory_growth"].min_increase_seconds == 0.0
    floored = load_rules(write(tmp_path, text + "    min_increase: 20ms\n"))
    assert floored.rules["memory_growth"].min_increase_seconds == pytest.approx(0.02)
    with pytest.raises(ConfigError, match=r"rules\.memory_growth\.min_increase: not a duration"):
        load_rules(write(tmp_path, text + "    min_increase: -5ms\n"))

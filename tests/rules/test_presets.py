"""Composable rules and presets (issue 12 item 5): ``extends:``, single-rule changes and
``enabled: false``, presets by name, ``--rules NAME`` and ``rules: NAME``, and the bad input."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from soakwatch.analyzer.cli import main
from soakwatch.errors import ConfigError
from soakwatch.rules.model import DEFAULT_RULES_PATH, load_rules, preset_names, resolve_rules
from soakwatch.run.config import load_run_config


def _runs() -> ModuleType:
    # the analyzer tests' builder of recorded runs (tests/ is no package: loaded by path)
    name = "soakwatch_test_runs"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "analyzer" / "runs.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_presets_are_quick_ci_staging_and_production_over_the_default_rules() -> None:
    assert preset_names() == ("ci", "production", "quick", "staging")
    default = load_rules()
    for name in preset_names():
        ruleset = load_rules(name)
        assert sorted(ruleset.names() + ruleset.disabled) == sorted(default.names()), name
        assert ruleset.bases == (str(DEFAULT_RULES_PATH),)
    # minutes cannot tell a pool sized by the load from one that leaks connections
    assert load_rules("quick").disabled == ("pool_variation",)


def test_quick_states_the_thresholds_it_judges_in_its_descriptions() -> None:
    quick = load_rules("quick").rules
    assert (
        quick["memory_growth"].threshold == 20 and "20 MB/h" in quick["memory_growth"].description
    )
    assert quick["fd_growth"].threshold == 60 and "60 fds per" in quick["fd_growth"].description
    assert (
        quick["thread_growth"].threshold == 30
        and "30 threads" in quick["thread_growth"].description
    )
    # everything it judges fits a quarter of an hour
    for rule in quick.values():
        needed = rule.warmup_seconds + max(rule.min_duration_seconds, rule.window_seconds)
        assert needed <= 15 * 60, rule.name
    # what is not changed stays the default's
    assert quick["restarts"] == load_rules().rules["restarts"]


def test_longer_profiles_judge_smaller_thresholds_over_longer_windows() -> None:
    ci, staging, production = (load_rules(n).rules for n in ("ci", "staging", "production"))
    for rule in ("memory_growth", "fd_growth", "thread_growth"):
        assert ci[rule].threshold > staging[rule].threshold > production[rule].threshold
        assert ci[rule].min_duration_seconds <= 2 * 3600
        assert staging[rule].min_duration_seconds <= 12 * 3600 - staging[rule].warmup_seconds
        assert production[rule].min_duration_seconds <= 48 * 3600


def test_a_file_extends_a_preset_changes_one_key_disables_a_rule_and_adds_one(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path / "mine.yaml",
        """\
version: 1
extends: quick
rules:
  memory_growth:
    threshold: 10
    alert: {for: 5m}
  pool_variation: {enabled: false}
  latency_degradation:
    min_increase: null
  queue_depth:
    kind: slope
    metrics: {value: app_queue_depth}
    threshold: 100
    unit: count/h
    comparison: "<"
""",
    )
    ruleset = load_rules(path)
    quick = load_rules("quick").rules
    memory = ruleset.rules["memory_growth"]
    assert memory.threshold == 10
    assert memory.window_seconds == quick["memory_growth"].window_seconds == 60
    # nested mappings merge key by key
    assert memory.alert.for_seconds == 300
    assert memory.alert.range_seconds == quick["memory_growth"].alert.range_seconds
    assert "pool_variation" not in ruleset.rules and ruleset.disabled == ("pool_variation",)
    assert ruleset.rules["latency_degradation"].min_increase_seconds == 0.0
    assert ruleset.names()[-1] == "queue_depth"
    assert ruleset.bases[0].endswith("presets/quick.yaml")
    assert ruleset.bases[1] == str(DEFAULT_RULES_PATH)


def test_list_rules_shows_what_is_in_force_with_a_preset(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(capsys, "--list-rules", "--rules", "quick")
    assert code == 0
    assert "memory_growth          slope            pass when < 20 MB/h  (required)" in out
    assert "presets/quick.yaml, extending" in err
    path = write(
        tmp_path / "off.yaml",
        "version: 1\nextends: ci\nrules:\n  gc_efficiency: {enabled: false}\n",
    )
    code, out, err = run(capsys, "--list-rules", "--rules", str(path))
    names = [line.split()[0] for line in out.splitlines() if not line.startswith(" ")]
    assert "gc_efficiency" not in names and "memory_growth" in names
    assert "disabled: gc_efficiency" in err


def test_an_unknown_name_is_exit_2_listing_the_known_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "--list-rules", "--rules", "qiuck")
    assert code == 2
    assert "unknown rules name 'qiuck'" in err
    for name in ("default", "quick", "ci", "staging", "production", "go", "node", "kubernetes"):
        assert name in err


def test_an_extends_cycle_and_a_missing_base_name_the_file(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "version: 1\nextends: b.yaml\n")
    b = write(tmp_path / "b.yaml", "version: 1\nextends: a.yaml\n")
    with pytest.raises(ConfigError) as caught:
        load_rules(a)
    assert caught.value.source == str(b) and caught.value.key == "extends"
    assert "extends itself" in str(caught.value) and "a.yaml -> " in str(caught.value)
    missing = write(tmp_path / "c.yaml", "version: 1\nextends: gone.yaml\n")
    with pytest.raises(ConfigError) as caught:
        load_rules(missing)
    assert caught.value.source == str(missing) and "gone.yaml" in str(caught.value)
    unknown = write(tmp_path / "d.yaml", "version: 1\nextends: nope\n")
    with pytest.raises(ConfigError) as caught:
        load_rules(unknown)
    assert caught.value.source == str(unknown) and "unknown rules name 'nope'" in str(caught.value)


def test_a_change_that_breaks_a_base_rule_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bad.yaml", "version: 1\nextends: default\nrules:\n  fd_growth: {unit: MB}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    assert caught.value.source == str(path) and caught.value.key == "rules.fd_growth.unit"


def test_a_file_named_like_a_pack_is_read_when_written_as_a_path(tmp_path: Path) -> None:
    own = write(tmp_path / "node", "version: 1\nextends: ci\n")
    assert resolve_rules("node").name == "node.yaml"
    assert resolve_rules(f"{tmp_path}/node") == own
    assert resolve_rules("node", base_dir=tmp_path).name == "node.yaml"


def test_soak_run_takes_rules_by_name_and_an_unknown_one_names_the_key(tmp_path: Path) -> None:
    config = write(
        tmp_path / "soak.yaml", "rules: node\nexporter: {services: [{name: a, match: {pid: 1}}]}\n"
    )
    parsed = load_run_config(config)
    assert parsed.rules_path is not None and parsed.rules_path.name == "node.yaml"
    assert load_rules(parsed.rules_path).rules["node_heap_growth"].kind == "slope"
    write(
        tmp_path / "soak.yaml", "rules: nodee\nexporter: {services: [{name: a, match: {pid: 1}}]}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_run_config(config)
    assert caught.value.key == "rules" and caught.value.source == str(config)
    assert "unknown rules name 'nodee'" in str(caught.value) and "node" in str(caught.value)


def test_quick_on_20_minutes_fails_a_fast_leak_and_does_not_fail_a_flat_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = _runs()
    # the demo's leak rate (about 900 MB/h) on "api"; "worker" flat; 5 s samples
    run_dir = runs.write_run(tmp_path, hours=20 / 60, interval=5.0, leak_mb_per_hour={"api": 900.0})
    code, out, _ = run(capsys, "--run-dir", str(run_dir), "--rules", "quick", "--format", "json",
                       "--only", "memory_growth")  # fmt: skip
    results = {r["subject"]["service"]: r for r in json.loads(out)["results"]}
    assert code == 1 and results["api"]["status"] == "fail", results["api"]["reason"]
    assert results["worker"]["status"] != "fail", results["worker"]["reason"]
    # the default rules cannot judge 20 minutes at all
    code, out, _ = run(
        capsys, "--run-dir", str(run_dir), "--format", "json", "--only", "memory_growth"
    )
    assert code == 3

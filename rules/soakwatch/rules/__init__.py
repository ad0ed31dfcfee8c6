"""The soak rules: the versioned spec ``rules/soakwatch/rules/soak.yaml`` and its typed model.

Import as ``soakwatch.rules``."""

from soakwatch.rules.model import (
    DEFAULT_RULES_PATH,
    AlertHints,
    LabelMatcher,
    MetricSelector,
    Rule,
    RuleOverride,
    RuleSet,
    load_rules,
    pack_names,
    parse_selector,
    preset_names,
    resolve_rules,
    rule_set_names,
)

__all__ = [
    "DEFAULT_RULES_PATH",
    "AlertHints",
    "LabelMatcher",
    "MetricSelector",
    "Rule",
    "RuleOverride",
    "RuleSet",
    "load_rules",
    "pack_names",
    "parse_selector",
    "preset_names",
    "resolve_rules",
    "rule_set_names",
]

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
    parse_selector,
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
    "parse_selector",
]

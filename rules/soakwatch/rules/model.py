"""The soak rules as a typed model: ``rules/soakwatch/rules/soak.yaml`` is read and checked once,
here, into frozen dataclasses. The analyzer's evaluation and the generated Prometheus rules are
both produced from this model; behind :func:`load_rules` no code sees the raw YAML.

A rule's metrics are PromQL series selectors (``name`` or ``name{label="value",...}``), parsed into
a :class:`MetricSelector` so that both consumers build their queries from the same parts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from soakwatch.configfile import MISSING, Section
from soakwatch.errors import ConfigError

__all__ = [
    "DEFAULT_RULES_PATH",
    "KINDS",
    "SPEC_VERSION",
    "SUSTAINED_WINDOWS",
    "UNITS",
    "AlertHints",
    "BaselineRule",
    "LabelMatcher",
    "MetricSelector",
    "Rule",
    "RuleOverride",
    "RuleSet",
    "load_rules",
    "pack_names",
    "parse_bytes",
    "parse_selector",
    "preset_names",
    "resolve_rules",
    "rule_set_names",
]

SPEC_VERSION = 1
DEFAULT_RULES_PATH = Path(__file__).with_name("soak.yaml")
# quantile_change: a change fails only once it has lasted this many of the rule's windows (a
# burst no longer than one window then covers less than half of the late stretch). Read by the
# analyzer's latency path and by soak run's start warnings.
SUSTAINED_WINDOWS = 2

Kind = Literal[
    "slope",
    "counter_ratio",
    "ratio_change",
    "variation",
    "quantile_change",
    "increase",
    "failure_fraction",
]
Comparison = Literal["<", "<=", ">=", ">"]

# kind -> (required metric roles, optional metric roles)
KINDS: Mapping[Kind, tuple[tuple[str, ...], tuple[str, ...]]] = MappingProxyType(
    {
        "slope": (("value",), ("start_time", "restarts", "up")),
        "counter_ratio": (("numerator", "denominator"), ()),
        "ratio_change": (("numerator", "denominator"), ()),
        "variation": (("value",), ()),
        "quantile_change": (("histogram",), ()),
        "increase": (("value",), ("start_time",)),
        "failure_fraction": (("value",), ()),
    }
)

# unit as written in the spec -> (base unit of the figures, factor from the unit to the base)
UNITS: Mapping[str, tuple[str, float]] = MappingProxyType(
    {
        "MB/h": ("bytes/hour", 1e6),
        "MiB/h": ("bytes/hour", 1024.0 * 1024.0),
        "KB/h": ("bytes/hour", 1e3),
        "KiB/h": ("bytes/hour", 1024.0),
        "bytes/h": ("bytes/hour", 1.0),
        "count/h": ("count/hour", 1.0),
        "ratio": ("ratio", 1.0),
        "percent": ("ratio", 0.01),
        "count": ("count", 1.0),
    }
)
# which base units fit which kind of rule
_KIND_BASE_UNITS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "slope": ("bytes/hour", "count/hour"),
        "counter_ratio": ("ratio",),
        "ratio_change": ("ratio",),
        "variation": ("ratio",),
        "quantile_change": ("ratio",),
        "increase": ("count",),
        "failure_fraction": ("ratio",),
    }
)
_COMPARISONS: tuple[Comparison, ...] = ("<", "<=", ">=", ">")
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_MATCHER = re.compile(
    r"""\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|\Z)"""
)


@dataclass(frozen=True)
class LabelMatcher:
    """One PromQL label matcher: ``name op "value"`` with op one of ``= != =~ !~``."""

    label: str
    op: str
    value: str

    def promql(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.label}{self.op}"{escaped}"'

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a series with ``labels`` is selected (missing label = empty string)."""
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found


@dataclass(frozen=True)
class MetricSelector:
    """A metric name and its label matchers, as written in ``metrics:`` of a rule."""

    metric: str
    matchers: tuple[LabelMatcher, ...] = ()

    def promql(self, extra: tuple[LabelMatcher, ...] = (), *, suffix: str = "") -> str:
        """The vector selector, e.g. ``soak_load_requests_total{outcome!="ok",service="api"}``.

        ``suffix`` is appended to the metric name (``_bucket`` for a histogram)."""
        matchers = self.matchers + extra
        inner = ",".join(m.promql() for m in matchers)
        return f"{self.metric}{suffix}{{{inner}}}" if inner else f"{self.metric}{suffix}"

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


def parse_selector(text: str) -> MetricSelector:
    """Parse ``name`` or ``name{label="v",other!~"re"}``. Raises ValueError with a reason."""
    text = text.strip()
    name, brace, rest = text.partition("{")
    name = name.strip()
    if not _NAME.match(name):
        raise ValueError(f"not a metric name: {name!r}")
    if not brace:
        return MetricSelector(name)
    if not rest.endswith("}"):
        raise ValueError(f"unclosed '{{' in selector {text!r}")
    body = rest[:-1].strip()
    matchers: list[LabelMatcher] = []
    pos = 0
    while pos < len(body):
        found = _MATCHER.match(body, pos)
        if not found:
            raise ValueError(f"bad label matcher in {text!r} at {body[pos:]!r}")
        value = re.sub(r"\\(.)", r"\1", found.group(3))
        if found.group(2) in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"bad regular expression {value!r}: {exc}") from None
        matchers.append(LabelMatcher(found.group(1), found.group(2), value))
        pos = found.end()
    return MetricSelector(name, tuple(matchers))


@dataclass(frozen=True)
class AlertHints:
    """What the generated Prometheus alerting rule uses: the range of its range vectors
    (``deriv(x[range])``), its ``for:`` and its ``severity`` label."""

    range_seconds: float
    for_seconds: float
    severity: str


@dataclass(frozen=True)
class BaselineRule:
    """A rule relative to earlier runs (Keptn's ``compare_with: several_results``): the figure
    may move at most ``max_change`` (a ratio, 0.1 = 10 %) in the worse direction from the
    median of the same figure in the last ``runs`` passing runs."""

    max_change: float
    runs: int


@dataclass(frozen=True)
class RuleOverride:
    """Per-service changes to a rule; ``None`` keeps the rule's value."""

    threshold: float | None = None
    warmup_seconds: float | None = None
    warmup_auto: bool | None = None
    window_seconds: float | None = None
    required: bool | None = None
    enabled: bool | None = None


@dataclass(frozen=True)
class Rule:
    """One soak rule. ``threshold`` is in ``unit``; ``threshold_base`` in ``base_unit``, the unit
    in which the analyzer computes the rule's figure (bytes/hour, ratio, count).

    ``warmup_seconds`` are skipped at the start of each segment; with ``warmup_auto`` the
    analyzer detects a longer warm-up (at most ``max_warmup_fraction`` of the segment).

    ``sum_over`` (variation rules): labels whose series are summed at each sample time into one
    value per subject and exporter, e.g. ``("state",)`` for a pool's size.

    ``min_increase_seconds`` (quantile_change rules): an absolute floor; the rule fails only when
    the quantile also rose by at least this much, so millisecond jitter and bucket interpolation
    on fast requests are not judged as degradation. 0 judges the relative change alone."""

    name: str
    kind: Kind
    description: str
    metrics: Mapping[str, MetricSelector]
    group_by: tuple[str, ...]
    threshold: float
    unit: str
    comparison: Comparison
    warmup_auto: bool
    warmup_seconds: float
    max_warmup_fraction: float
    window_seconds: float
    min_duration_seconds: float
    min_points: int
    required: bool
    enabled: bool = True
    confidence: float = 0.95
    quantile: float | None = None
    alert: AlertHints = field(default_factory=lambda: AlertHints(3600.0, 600.0, "warning"))
    services: Mapping[str, RuleOverride] = field(default_factory=lambda: MappingProxyType({}))
    limit: float | None = None
    sliding_window_seconds: float | None = None
    baseline: BaselineRule | None = None
    sum_over: tuple[str, ...] = ()
    min_increase_seconds: float = 0.0

    @property
    def lower_is_better(self) -> bool:
        return self.comparison in ("<", "<=")

    @property
    def base_unit(self) -> str:
        return UNITS[self.unit][0]

    @property
    def unit_factor(self) -> float:
        """Multiply a figure in ``unit`` by this to get it in ``base_unit``."""
        return UNITS[self.unit][1]

    @property
    def threshold_base(self) -> float:
        return self.threshold * self.unit_factor

    def passes(self, figure: float) -> bool:
        """Whether ``figure`` (in the base unit) is on the passing side of the threshold."""
        limit = self.threshold_base
        if self.comparison == "<":
            return figure < limit
        if self.comparison == "<=":
            return figure <= limit
        if self.comparison == ">=":
            return figure >= limit
        return figure > limit

    def metric(self, role: str) -> MetricSelector | None:
        return self.metrics.get(role)

    def for_service(self, service: str | None) -> Rule:
        """This rule with the overrides of ``service`` applied (itself when there are none)."""
        override = self.services.get(service) if service is not None else None
        if override is None:
            return self
        changes = {
            name: value
            for name, value in (
                ("threshold", override.threshold),
                ("warmup_seconds", override.warmup_seconds),
                ("warmup_auto", override.warmup_auto),
                ("window_seconds", override.window_seconds),
                ("required", override.required),
                ("enabled", override.enabled),
            )
            if value is not None
        }
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RuleSet:
    """All rules of a spec file, by name, in file order."""

    version: int
    rules: Mapping[str, Rule]
    source: str
    # rules switched off with ``enabled: false`` (not in ``rules``), and the files this one
    # extends, nearest first
    disabled: tuple[str, ...] = ()
    bases: tuple[str, ...] = ()

    def names(self) -> tuple[str, ...]:
        return tuple(self.rules)

    def select(self, only: tuple[str, ...] | list[str] | None) -> RuleSet:
        """The rule set restricted to ``only`` (all when None). Unknown names raise ConfigError."""
        if not only:
            return self
        unknown = [name for name in only if name not in self.rules]
        if unknown:
            raise ConfigError(
                f"unknown rule(s) {', '.join(unknown)}; known: {', '.join(self.rules)}",
                source=self.source,
            )
        return replace(
            self, rules=MappingProxyType({n: r for n, r in self.rules.items() if n in only})
        )


def _warmup(section: Section, key: str) -> tuple[bool | None, float | None]:
    """``auto`` -> (True, None); a duration -> (False, seconds); absent -> (None, None)."""
    if key not in section:
        section.raw(key, None)
        return None, None
    value = section.raw(key)
    if value == "auto":
        return True, None
    return False, section.duration(key, exclusive_minimum=None, minimum=0.0)


def _override(section: Section) -> RuleOverride:
    auto, seconds = _warmup(section, "warmup")
    result = RuleOverride(
        threshold=section.number("threshold", None),
        warmup_auto=auto,
        warmup_seconds=seconds,
        window_seconds=section.duration("window", None),
        required=section.boolean("required", None),
        enabled=section.boolean("enabled", None),
    )
    section.finish()
    return result


def _metrics(section: Section, kind: Kind) -> Mapping[str, MetricSelector]:
    required, optional = KINDS[kind]
    metrics: dict[str, MetricSelector] = {}
    for role in required + optional:
        text = section.string(role, None if role in optional else MISSING)
        if text is not None:
            metrics[role] = _parse(section, role, text)
    section.finish()
    return MappingProxyType(metrics)


def _parse(section: Section, role: str, text: str) -> MetricSelector:
    try:
        return parse_selector(text)
    except ValueError as exc:
        raise section.error(role, str(exc)) from None


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*\Z")
_SIZE_FACTORS = {
    None: 1.0,
    "B": 1.0,
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
    "TB": 1e12,
    "KiB": 1024.0,
    "MiB": 1024.0**2,
    "GiB": 1024.0**3,
    "TiB": 1024.0**4,
}


def parse_bytes(value: object) -> float:
    """Bytes from a number or "512MiB", "2GB", "1.5 GiB". Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size, got {value!r}")
    if isinstance(value, (int, float)):
        size = float(value)
    else:
        found = _SIZE.match(str(value))
        if not found:
            raise ValueError(f"not a size: {value!r} (use e.g. 512MiB, 2GB)")
        size = float(found.group(1)) * _SIZE_FACTORS[found.group(2)]
    if not size > 0:
        raise ValueError(f"must be greater than 0, got {value!r}")
    return size


def _limit(section: Section, kind: str) -> float | None:
    """``limit``: a level (bytes) that only slope rules project towards."""
    if kind != "slope":
        if "limit" in section:
            raise section.error("limit", f"not used by a {kind} rule")
        section.raw("limit", None)
        return None
    limit: float | None = section.convert("limit", parse_bytes, None)
    return limit


def _sum_over(section: Section, kind: str, group_by: Sequence[str]) -> tuple[str, ...]:
    """``sum_over``: labels whose series are added up into one value per subject and time (the
    states of one pool make its size). Only variation rules take it."""
    if kind != "variation":
        if "sum_over" in section:
            raise section.error("sum_over", f"not used by a {kind} rule")
        section.raw("sum_over", None)
        return ()
    labels = section.string_list("sum_over", ())
    for label in labels:
        if not _LABEL.match(label):
            raise section.error("sum_over", f"not a label name: {label!r}")
        if label in group_by:
            raise section.error("sum_over", f"{label!r} is also in group_by")
    return tuple(labels)


def _min_increase(section: Section, kind: str) -> float:
    """``min_increase``: the absolute rise (seconds) a quantile_change rule needs on top of its
    relative threshold before it fails; below it, changes are jitter and bucket interpolation."""
    if kind != "quantile_change":
        if "min_increase" in section:
            raise section.error("min_increase", f"not used by a {kind} rule")
        section.raw("min_increase", None)
        return 0.0
    seconds: float = section.duration("min_increase", 0.0, minimum=0.0, exclusive_minimum=None)
    return seconds


def _baseline(section: Section) -> BaselineRule:
    unit = section.string("unit", "percent", choices=("percent", "ratio"))
    change = section.number("max_change", minimum=0.0)
    result = BaselineRule(
        max_change=change * (0.01 if unit == "percent" else 1.0),
        runs=section.number("runs", 3, minimum=1, integer=True),
    )
    section.finish()
    return result


def _rule(name: str, section: Section) -> Rule:
    if not _NAME.match(name) or ":" in name:
        raise section.error("", f"rule names must be identifiers, got {name!r}")
    kind = section.string("kind", choices=tuple(KINDS))
    unit = section.string("unit", choices=tuple(UNITS))
    if UNITS[unit][0] not in _KIND_BASE_UNITS[kind]:
        allowed = [u for u, (base, _) in UNITS.items() if base in _KIND_BASE_UNITS[kind]]
        raise section.error("unit", f"a {kind} rule takes one of {', '.join(allowed)}")
    metrics = _metrics(section.section("metrics", required=True), kind)
    group_by = section.string_list("group_by", ("service",))
    for label in group_by:
        if not _LABEL.match(label):
            raise section.error("group_by", f"not a label name: {label!r}")
    auto, seconds = _warmup(section, "warmup")
    quantile = None
    if kind == "quantile_change":
        quantile = section.number("quantile", 0.95, exclusive_minimum=0.0, maximum=1.0)
        if quantile >= 1.0:
            raise section.error("quantile", "must be below 1")
    confidence = section.number("confidence", 0.95, minimum=0.5, maximum=0.999)
    alert_section = section.section("alert")
    alert = AlertHints(
        range_seconds=alert_section.duration("range", 3600.0),
        for_seconds=alert_section.duration("for", 600.0, minimum=0.0),
        severity=alert_section.string("severity", "warning"),
    )
    alert_section.finish()
    overrides = {service: _override(sub) for service, sub in section.named_sections("services")}
    rule = Rule(
        name=name,
        kind=kind,
        description=" ".join(section.string("description", "").split()),
        metrics=metrics,
        group_by=tuple(group_by),
        threshold=section.number("threshold"),
        unit=unit,
        comparison=section.string("comparison", choices=_COMPARISONS),
        warmup_auto=bool(auto),
        warmup_seconds=(
            seconds
            if seconds is not None
            else section.duration("min_warmup", 0.0, minimum=0.0, exclusive_minimum=None)
        ),
        max_warmup_fraction=section.number("max_warmup_fraction", 0.5, minimum=0.0, maximum=0.9),
        window_seconds=section.duration("window", 600.0),
        min_duration_seconds=section.duration("min_duration", 0.0, minimum=0.0),
        min_points=section.number("min_points", 2, minimum=2, integer=True),
        required=section.boolean("required", False),
        enabled=section.boolean("enabled", True),
        confidence=confidence,
        quantile=quantile,
        alert=alert,
        services=MappingProxyType(overrides),
        limit=_limit(section, kind),
        sliding_window_seconds=section.duration("sliding_window", None),
        baseline=_baseline(section.section("baseline")) if "baseline" in section else None,
        sum_over=_sum_over(section, kind, group_by),
        min_increase_seconds=_min_increase(section, kind),
    )
    if "baseline" not in section:
        section.raw("baseline", None)
    if not auto:
        # "min_warmup" only makes sense with automatic detection; read it so finish() accepts it
        section.raw("min_warmup", None)
    section.finish()
    return rule


# -- named rule sets and ``extends:`` ------------------------------------------------------------
PRESETS_DIR = Path(__file__).with_name("presets")
PACKS_DIR = Path(__file__).with_name("packs")
_SET_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")


def rule_set_names() -> dict[str, Path]:
    """The packaged rule sets by name: ``default`` (soak.yaml), the presets, the runtime packs."""
    names = {"default": DEFAULT_RULES_PATH}
    for folder in (PRESETS_DIR, PACKS_DIR):
        if folder.is_dir():
            names.update((p.stem, p) for p in sorted(folder.glob("*.yaml")))
    return names


def preset_names() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))


def pack_names() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in PACKS_DIR.glob("*.yaml")))


def _known_names_text() -> str:
    return f"default; presets: {', '.join(preset_names())}; packs: {', '.join(pack_names())}"


def resolve_rules(
    ref: str | os.PathLike[str] | None, *, base_dir: str | os.PathLike[str] | None = None
) -> Path:
    """The file behind ``ref``: a packaged name (``default``, a preset such as ``quick``, a pack
    such as ``node``), else a path (relative to ``base_dir`` when given). A name-like ``ref``
    (letters, digits, ``-``, ``_``: no dot, no slash) that is neither packaged nor an existing
    file is a ConfigError (exit 2) listing the known names; write ``./node`` for a file that is
    named like a pack."""
    if ref is None:
        return DEFAULT_RULES_PATH
    text = os.fspath(ref)
    named = rule_set_names()
    if isinstance(ref, str) and text in named:
        return named[text]
    path = Path(base_dir) / text if base_dir is not None else Path(text)
    if isinstance(ref, str) and _SET_NAME.match(text) and not path.is_file():
        raise ConfigError(
            f"unknown rules name {text!r}; known: {_known_names_text()} (or a path to a rules file)"
        )
    return path


def _raw_rules(top: Section) -> dict[str, Mapping[str, Any]]:
    raw = top.raw("rules", None)
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise top.error("rules", f"expected a mapping, got {type(raw).__name__}")
    for name, body in raw.items():
        if not isinstance(name, str):
            raise top.error("rules", f"rule names must be strings, got {name!r}")
        if body is not None and not isinstance(body, Mapping):
            raise top.error(f"rules.{name}", f"expected a mapping, got {type(body).__name__}")
    return {name: dict(body or {}) for name, body in raw.items()}


def _merge(base: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``change`` laid over it: nested mappings merge key by key (``alert: {for:
    5m}`` changes only ``for``), a ``null`` removes the key, anything else replaces it."""
    merged = dict(base)
    for key, value in change.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class _Layer:
    """A rules file read raw, with everything it extends merged in: rule name -> raw mapping
    and the file that last changed it."""

    rules: dict[str, tuple[Mapping[str, Any], str]]
    bases: tuple[str, ...]


def _layer(path: Path, chain: tuple[Path, ...]) -> _Layer:
    source = str(path)
    top = Section.load(path)
    version = top.number("version", integer=True)
    if version != SPEC_VERSION:
        raise top.error("version", f"unsupported version {version}; this soakwatch reads 1")
    rules: dict[str, tuple[Mapping[str, Any], str]] = {}
    bases: tuple[str, ...] = ()
    if "extends" in top:
        ref = top.string("extends")
        try:
            base_path = resolve_rules(ref, base_dir=path.parent)
        except ConfigError as exc:
            raise top.error("extends", exc.reason) from None
        if not base_path.is_file():
            raise top.error("extends", f"the base {ref!r} is not a file ({base_path})")
        resolved = base_path.resolve()
        if resolved in chain:
            cycle = " -> ".join(str(p) for p in (*chain, resolved))
            raise top.error("extends", f"extends itself: {cycle}")
        base = _layer(base_path, (*chain, resolved))
        rules = dict(base.rules)
        bases = (str(base_path), *base.bases)
    for name, body in _raw_rules(top).items():
        if name in rules:
            rules[name] = (_merge(rules[name][0], body), source)
        else:
            rules[name] = (body, source)
    top.finish()
    return _Layer(rules, bases)


def load_rules(path: str | os.PathLike[str] | None = None) -> RuleSet:
    """Read and check a rules spec (default: the packaged ``soak.yaml`` beside this module).

    ``path`` may also name a packaged set (:func:`resolve_rules`). A file with ``extends: NAME``
    (or a path, relative to the file) starts from that set's rules, then adds rules, changes
    single keys of a rule (``threshold: 5`` changes just that) or switches one off with
    ``enabled: false`` (left out of ``rules``, named in ``disabled``).

    Raises ConfigError naming the file and the key path on any problem, unknown keys included;
    an ``extends:`` cycle or a missing base names the file that says ``extends``."""
    source_path = resolve_rules(path)
    layer = _layer(source_path, (source_path.resolve(),))
    rules: dict[str, Rule] = {}
    disabled: list[str] = []
    for name, (body, source) in layer.rules.items():
        rule = _rule(name, Section(body, source=source, path=f"rules.{name}"))
        revived = any(o.enabled for o in rule.services.values())
        if rule.enabled or revived:
            rules[name] = rule
        else:
            disabled.append(name)
    if not layer.rules:
        raise ConfigError("no rules defined", source=str(source_path), key="rules")
    return RuleSet(
        version=SPEC_VERSION,
        rules=MappingProxyType(rules),
        source=str(source_path),
        disabled=tuple(disabled),
        bases=layer.bases,
    )

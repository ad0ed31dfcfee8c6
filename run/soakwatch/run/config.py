"""The soak config of ``soak run --config soak.yaml`` (and of the pytest plugin's
``--soak-config``), parsed at the border into a frozen ``RunConfig``.

File shape (every key in docs/run.md)::

    profile: ci                      # default profile; --profile wins
    duration: 30m                    # optional; --duration wins; default: the profile's
    sampling_interval: 15s           # optional; default: the profile's
    out: soak-runs                   # parent folder of run directories (--out names one run dir)
    rules: rules.yaml                # optional soak rules: a file (relative to this one) or a
                                     # packaged name: quick, ci, staging, production, go, jvm,
                                     # node, dotnet, kubernetes
    checks:                          # availability, checked before anything starts
      - {name: backend, kind: http, target: "http://127.0.0.1:8080/health"}
      - {name: auth, kind: http, target: "http://127.0.0.1:9000/health", required: false}
    exporter:                        # the soak-exporter config (its `listen` is set by soak run)
      services: [{name: backend, match: {pidfile: /run/backend.pid}}]
    load:                            # the soak load config (duration, summary, metrics_listen set
      scenarios:                     # by soak run); a scenario may name the checks it needs:
        - {kind: http, rate: 20/s, endpoints: [{url: "http://127.0.0.1:8080/"}]}
        - {kind: websocket, name: ws_auth, requires: [auth], ...}
    scrape:                          # more /metrics endpoints to record (e.g. an in-process one)
      - {name: backend-gc, url: "http://127.0.0.1:9465/metrics"}

The ``exporter`` and ``load`` sections belong to those components: they are checked here with
their own parsers, so an error names this file and the key path inside the section.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soakwatch.configfile import Section
from soakwatch.errors import ConfigError
from soakwatch.profiles import PROFILES
from soakwatch.run.availability import ServiceCheck

__all__ = ["RunConfig", "ScrapeTarget", "load_run_config", "parse_run_config"]


@dataclass(frozen=True)
class ScrapeTarget:
    """A /metrics endpoint whose text is recorded into the run directory every interval."""

    name: str
    url: str

    @classmethod
    def from_section(cls, section: Section) -> ScrapeTarget:
        target = cls(section.string("name"), section.url("url", schemes=("http", "https")))
        section.finish()
        return target


@dataclass(frozen=True)
class RunConfig:
    """One soak run's setup. ``exporter`` and ``load`` are those components' own config mappings
    (already validated by their parsers), kept as data because they are handed on as files."""

    source: str
    profile: str | None = None
    duration_seconds: float | None = None
    sampling_interval_seconds: float | None = None
    out_dir: Path | None = None
    rules_path: Path | None = None
    checks: tuple[ServiceCheck, ...] = ()
    exporter: Mapping[str, Any] | None = None
    load: Mapping[str, Any] | None = None
    scenario_requires: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    scrape: tuple[ScrapeTarget, ...] = ()

    @property
    def scenario_names(self) -> tuple[str, ...]:
        if not self.load:
            return ()
        return tuple(
            str(s.get("name", s.get("kind"))) for s in self.load.get("scenarios", []) or []
        )

    def scenarios_of_kind(self, *kinds: str) -> tuple[str, ...]:
        """Names of the load scenarios of the given kinds (http, websocket, sessions, ...)."""
        if not self.load:
            return ()
        return tuple(
            str(s.get("name", s.get("kind")))
            for s in self.load.get("scenarios", []) or []
            if s.get("kind") in kinds
        )

    def load_without(self, dropped: set[str]) -> dict[str, Any]:
        """The load section with the scenarios named in ``dropped`` left out."""
        data = dict(copy.deepcopy(self.load or {}))
        data["scenarios"] = [
            s
            for s in data.get("scenarios", []) or []
            if str(s.get("name", s.get("kind"))) not in dropped
        ]
        return data


def _relative(base: Path | None, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() or base is None else base / path


def _rules_path(section: Section, base_dir: Path | None, text: str) -> Path:
    """``rules:``: a packaged rule set by name (``quick``, ``ci``, ``node``, ...) or a file
    relative to the config; an unknown name is an error listing the known ones."""
    from soakwatch.rules.model import resolve_rules

    if text.startswith("~") or Path(text).is_absolute():
        return _relative(base_dir, text)
    try:
        return resolve_rules(text, base_dir=base_dir)
    except ConfigError as exc:
        raise section.error("rules", exc.reason) from None


def _load_section(
    section: Section, checks: tuple[ServiceCheck, ...]
) -> tuple[dict[str, Any] | None, dict[str, tuple[str, ...]]]:
    """The load mapping with our ``requires`` keys taken out, and what each scenario requires."""
    if "load" not in section:
        section.raw("load", None)
        return None, {}
    raw = section.raw("load")
    if not isinstance(raw, Mapping):
        raise section.error("load", f"expected a mapping, got {type(raw).__name__}")
    data = dict(copy.deepcopy(raw))
    scenarios = data.get("scenarios", [])
    if not isinstance(scenarios, list):
        raise section.error("load.scenarios", "expected a list")
    known = {c.name for c in checks}
    requires: dict[str, tuple[str, ...]] = {}
    cleaned = []
    for index, item in enumerate(scenarios):
        if not isinstance(item, Mapping):
            raise section.error(f"load.scenarios[{index}]", "expected a mapping")
        item = dict(item)
        names = item.pop("requires", [])
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise section.error(f"load.scenarios[{index}].requires", "expected a list of names")
        unknown = [n for n in names if n not in known]
        if unknown:
            raise section.error(
                f"load.scenarios[{index}].requires",
                f"no check named {', '.join(map(repr, unknown))} in checks",
            )
        scenario_name = str(item.get("name", item.get("kind")))
        requires[scenario_name] = tuple(names)
        cleaned.append(item)
    data["scenarios"] = cleaned
    _validate_load(data, section.source)
    return data, requires


def _validate_load(data: Mapping[str, Any], source: str) -> None:
    """Check the load section with the load driver's own parser.

    The profile is chosen on the command line, after this file is read; any profile fills the
    same keys (connections, rates), so "ci" stands in for it: a scenario that leaves those to
    the profile must not fail here when the run itself would work."""
    from soakwatch.load.config import load_config

    try:
        load_config(data=data, source=source, profile="ci", environ={})
    except ConfigError as exc:
        key = f"load.{exc.key}" if exc.key else "load"
        raise ConfigError(exc.reason, source=source, key=key) from None


def _exporter_section(section: Section) -> dict[str, Any] | None:
    if "exporter" not in section:
        section.raw("exporter", None)
        return None
    raw = section.raw("exporter")
    if not isinstance(raw, Mapping):
        raise section.error("exporter", f"expected a mapping, got {type(raw).__name__}")
    data = dict(copy.deepcopy(raw))
    from soakwatch.exporter.config import parse_config

    try:
        parse_config({**data, "listen": "127.0.0.1:0"}, source=section.source)
    except ConfigError as exc:
        key = f"exporter.{exc.key}" if exc.key else "exporter"
        raise ConfigError(exc.reason, source=section.source, key=key) from None
    return data


def parse_run_config(data: Any, *, source: str, base_dir: Path | None = None) -> RunConfig:
    """A RunConfig from loaded YAML data; relative paths are taken from ``base_dir``."""
    return _from_section(Section(data, source=source), base_dir)


NOTHING_TO_WATCH = (
    "nothing to watch: the file is empty (give an exporter, load or scrape section; "
    "see docs/run.md)"
)


def _from_section(section: Section, base_dir: Path | None) -> RunConfig:
    source = section.source
    if not section.keys():
        # An empty file (or a bare ``---``) would be a whole run of the default profile that
        # records nothing: a mistake, never a plan.
        raise ConfigError(NOTHING_TO_WATCH, source=source)
    profile = section.string("profile", None, choices=tuple(PROFILES))
    duration = section.duration("duration", None)
    interval = section.duration("sampling_interval", None, minimum=0.1)
    out = section.string("out", None)
    rules = section.string("rules", None)
    checks = tuple(ServiceCheck.from_section(s) for s in section.sections("checks"))
    names = [c.name for c in checks]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise section.error(f"checks[{index}].name", f"duplicate check name {name!r}")
    exporter = _exporter_section(section)
    load, requires = _load_section(section, checks)
    scrape = tuple(ScrapeTarget.from_section(s) for s in section.sections("scrape"))
    section.finish()
    return RunConfig(
        source=source,
        profile=profile,
        duration_seconds=duration,
        sampling_interval_seconds=interval,
        out_dir=_relative(base_dir, out) if out else None,
        rules_path=_rules_path(section, base_dir, rules) if rules else None,
        checks=checks,
        exporter=exporter,
        load=load,
        scenario_requires=requires,
        scrape=scrape,
    )


def load_run_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read and check a soak config file."""
    return _from_section(Section.load(path), Path(path).resolve().parent)

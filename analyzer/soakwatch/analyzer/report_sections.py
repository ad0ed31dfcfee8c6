"""The parts of the HTML report that come from the run directory rather than from the verdict:
the load driver's summary per scenario (``load-summary.json``, schema
``soakwatch.load.summary/1``: rate achieved against target, latency p50/p95/p99, outcomes, the
driver's own lag, its steps and thresholds) and the run's configuration (``config.json``, which
the run wrote with its secrets redacted; a value under a key named like a secret is hidden here
again, and every URL loses its password).

Both files are optional: a run directory without them gives no section; one that cannot be
read gives a line saying why, never an exception (the verdict must still be written)."""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soakwatch.configfile import redact_urls_in

__all__ = [
    "CONFIG_FILE",
    "LOAD_SUMMARY_FILE",
    "RunFiles",
    "config_section",
    "load_section",
    "read_run_files",
    "redact",
]

LOAD_SUMMARY_FILE = "load-summary.json"
CONFIG_FILE = "config.json"
REDACTED = "***"

# A key whose value is a credential (the run's own rule, soakwatch.run.secrets, repeated here:
# the analyzer does not import the orchestration).
_SECRET_KEY = re.compile(
    r"(?:^|[_-])(?:password|passwd|pwd|pass|passphrase|token|secret|credentials?|api[_-]?key"
    r"|access[_-]?key|private[_-]?key|auth[_-]?token|authorization|cookie)(?:$|[_-])",
    re.IGNORECASE,
)
_SECRET_HEADER_NAMES = ("authorization", "proxy-authorization", "cookie", "set-cookie")


@dataclass(frozen=True)
class RunFiles:
    """What the run directory holds for the report (None: the file is not there); ``problems``
    names the files that are there but could not be read."""

    load_summary: Mapping[str, Any] | None = None
    config: Mapping[str, Any] | None = None
    problems: tuple[str, ...] = ()


def _read_json(path: Path, problems: list[str]) -> Mapping[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path.name}: {getattr(exc, 'strerror', None) or exc}")
        return None
    try:
        document = json.loads(text)
    except ValueError as exc:
        problems.append(f"{path.name}: not JSON ({exc})")
        return None
    if not isinstance(document, Mapping):
        problems.append(f"{path.name}: expected an object, got {type(document).__name__}")
        return None
    return document


def read_run_files(run_dir: Path | str | None) -> RunFiles:
    """The load summary and config of ``run_dir`` (an empty RunFiles for None)."""
    if run_dir is None:
        return RunFiles()
    folder = Path(run_dir)
    problems: list[str] = []
    summary = _read_json(folder / LOAD_SUMMARY_FILE, problems)
    if summary is not None and not isinstance(summary.get("scenarios"), Mapping):
        problems.append(f"{LOAD_SUMMARY_FILE}: no 'scenarios' object")
        summary = None
    config = _read_json(folder / CONFIG_FILE, problems)
    return RunFiles(summary, config, tuple(problems))


# -- numbers ------------------------------------------------------------------------------------
def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _ms(value: object) -> str:
    seconds = _number(value)
    if seconds is None:
        return "–"
    ms = seconds * 1000
    return f"{ms:.3g}" if ms < 100 else f"{ms:,.0f}"


def _count(value: object) -> str:
    number = _number(value)
    return "–" if number is None else f"{number:,.0f}"


def _rate(value: object) -> str:
    number = _number(value)
    return "–" if number is None else f"{number:.3g}/s"


def _percent(value: object) -> str:
    number = _number(value)
    if number is None:
        return "–"
    return "0 %" if number == 0 else f"{number * 100:.3g} %"


def _seconds(value: object) -> str:
    from soakwatch.durations import format_duration

    number = _number(value)
    return "–" if number is None else format_duration(number)


def _outcomes(outcomes: object) -> str:
    """The outcomes that happened, largest first: "ok 705, timeout 3"."""
    seen = [
        (str(name), count)
        for name, value in _mapping(outcomes).items()
        if (count := _number(value)) is not None and count > 0
    ]
    seen.sort(key=lambda item: (item[0] != "ok", -item[1]))
    return ", ".join(f"{name} {count:,.0f}" for name, count in seen) or "none"


def _percentiles(latency: object) -> tuple[str, str, str]:
    part = _mapping(latency)
    return _ms(part.get("p50")), _ms(part.get("p95")), _ms(part.get("p99"))


# -- the load summary ---------------------------------------------------------------------------
_LOAD_HEAD = (
    "<tr><th>scenario</th><th>kind</th><th>rate: target</th><th>achieved</th>"
    "<th>sent</th><th>completed</th><th>errors</th>"
    "<th>latency p50 / p95 / p99 (ms)</th><th>driver lag p50 / p99 (ms)</th>"
    "<th>outcomes</th></tr>"
)


def _achieved(part: Mapping[str, Any]) -> tuple[str, str]:
    """The achieved rate, and the row's class when it is short of the target by 5 % or more."""
    target = _number(part.get("target_rate_per_second"))
    achieved = _number(part.get("achieved_rate_per_second"))
    text = _rate(achieved)
    if target and achieved is not None:
        share = achieved / target
        text += f" ({share:.0%})"
        if share < 0.95:
            return text, "short"
    return text, ""


def _scenario_rows(name: str, part: Mapping[str, Any]) -> list[str]:
    e = html.escape
    skipped = part.get("skipped")
    if skipped:
        return [
            f'<tr class="skipped"><td>{e(name)}</td><td>{e(str(part.get("kind", "")))}</td>'
            f'<td colspan="8">skipped: {e(str(skipped))}</td></tr>'
        ]
    achieved, short = _achieved(part)
    errors = _number(part.get("errors")) or 0.0
    row_class = "failing" if errors else short
    lag = _mapping(part.get("lag_seconds"))
    lag_text = f"{_ms(lag.get('p50'))} / {_ms(lag.get('p99'))}" if lag else "–"
    error_text = _count(errors)
    if errors:
        error_text += f" ({_percent(part.get('error_ratio'))})"
    rows = [
        f'<tr class="{row_class}"><td>{e(name)}</td><td>{e(str(part.get("kind", "")))}</td>'
        f"<td>{e(_rate(part.get('target_rate_per_second')))}</td><td>{e(achieved)}</td>"
        f"<td>{e(_count(part.get('sent')))}</td><td>{e(_count(part.get('completed')))}</td>"
        f"<td>{e(error_text)}</td>"
        f"<td>{e(' / '.join(_percentiles(part.get('latency_seconds'))))}</td>"
        f"<td>{e(lag_text)}</td><td>{e(_outcomes(part.get('outcomes')))}</td></tr>"
    ]
    for step, figures in _mapping(part.get("steps")).items():
        step_part = _mapping(figures)
        step_errors = _number(step_part.get("errors")) or 0.0
        step_error_text = _count(step_errors)
        if step_errors:
            step_error_text += f" ({_percent(step_part.get('error_ratio'))})"
        rows.append(
            f'<tr class="step{" failing" if step_errors else ""}"><td>&nbsp;&nbsp;step '
            f'{e(str(step))}</td><td>step</td><td colspan="3"></td>'
            f"<td>{e(_count(step_part.get('completed')))}</td><td>{e(step_error_text)}</td>"
            f"<td>{e(' / '.join(_percentiles(step_part.get('latency_seconds'))))}</td>"
            f"<td></td><td>{e(_outcomes(step_part.get('outcomes')))}</td></tr>"
        )
    return rows


def _thresholds(items: object) -> str:
    e = html.escape
    if not isinstance(items, Sequence) or isinstance(items, str) or not items:
        return ""
    parts = []
    for item in items:
        entry = _mapping(item)
        where = entry.get("scenario") or "the whole run"
        value = _number(entry.get("value"))
        status = str(entry.get("status", "?"))
        shown = "no data" if value is None else f"{value:.4g}"
        css = "breached" if status == "breached" else ""
        parts.append(
            f'<span class="{css}">{e(str(entry.get("threshold", "?")))} on {e(str(where))}: '
            f"{e(shown)} ({e(status.replace('_', ' '))})</span>"
        )
    return "<p>Load thresholds: " + "; ".join(parts) + "</p>"


def load_section(summary: Mapping[str, Any]) -> str:
    """The "Load" section: one row per scenario (and per step of a Python scenario)."""
    e = html.escape
    totals = _mapping(summary.get("totals"))
    scenarios = _mapping(summary.get("scenarios"))
    status = str(summary.get("status", "?"))
    stop = summary.get("stop_reason")
    facts = [
        f"status {status}" + (f" ({stop})" if stop else ""),
        f"{_seconds(summary.get('active_seconds'))} of load "
        f"({_seconds(summary.get('planned_seconds'))} planned)",
    ]
    if summary.get("profile"):
        facts.append(f"profile {summary['profile']}")
    if summary.get("shard") not in (None, "0/1"):
        facts.append(f"shard {summary['shard']}")
    if totals:
        p50, p95, p99 = _percentiles(totals.get("latency_seconds"))
        facts.append(
            f"{_count(totals.get('operations'))} operations, {_count(totals.get('errors'))} "
            f"errors ({_percent(totals.get('error_ratio'))}), latency p50 {p50} ms, "
            f"p95 {p95} ms, p99 {p99} ms"
        )
        lag = _mapping(totals.get("lag_seconds"))
        if lag:
            facts.append(f"driver lag p99 {_ms(lag.get('p99'))} ms")
    parts = [f"<h2>Load</h2>\n<p>{e('; '.join(facts))}.</p>"]
    if summary.get("error"):
        parts.append(f'<p class="warning">load driver error: {e(str(summary["error"]))}</p>')
    bottleneck = summary.get("bottleneck")
    if isinstance(bottleneck, Sequence) and not isinstance(bottleneck, str):
        parts.extend(f'<p class="warning">{e(str(warning))}</p>' for warning in bottleneck)
    rows: list[str] = []
    for name, part in scenarios.items():
        rows.extend(_scenario_rows(str(name), _mapping(part)))
    if rows:
        parts.append(f'<table class="load">{_LOAD_HEAD}\n' + "\n".join(rows) + "</table>")
    parts.append(_thresholds(summary.get("thresholds")))
    parts.append(
        '<p class="note">Driver lag: how late the driver sent each operation after it was '
        "due (its own delay, not the service's); latency counts from when it was due.</p>"
    )
    return "\n".join(part for part in parts if part) + "\n"


# -- the configuration --------------------------------------------------------------------------
def _is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key)) or key.lower() in _SECRET_HEADER_NAMES


def redact(value: Any, key: str = "") -> Any:
    """``value`` with the value under every key named like a secret replaced by ``***`` and
    every URL's password hidden (whatever the run already did)."""
    secret = key and _is_secret_key(key) and value not in (None, "", REDACTED)
    if secret and not isinstance(value, (Mapping, list, tuple)):
        return REDACTED
    if isinstance(value, Mapping):
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item, key) for item in value]
    if isinstance(value, str):
        return redact_urls_in(value)
    return value


def config_section(config: Mapping[str, Any]) -> str:
    """The "Run configuration" section: a line of key facts, the whole redacted document
    folded below it."""
    e = html.escape
    safe = redact(config)
    profile = _mapping(safe.get("profile"))
    facts = []
    if safe.get("run_id"):
        facts.append(f"run {safe['run_id']}")
    if profile.get("name"):
        facts.append(f"profile {profile['name']}")
    if safe.get("source"):
        facts.append(f"from {safe['source']}")
    if _number(safe.get("duration_seconds")) is not None:
        facts.append(f"duration {_seconds(safe.get('duration_seconds'))}")
    if _number(safe.get("sampling_interval_seconds")) is not None:
        facts.append(f"sampled every {_seconds(safe.get('sampling_interval_seconds'))}")
    scenarios = _mapping(safe.get("load")).get("scenarios")
    if isinstance(scenarios, list):
        facts.append(f"{len(scenarios)} load scenarios")
    services = _mapping(safe.get("exporter")).get("services")
    if isinstance(services, list):
        names = [str(_mapping(s).get("name", "?")) for s in services]
        facts.append(f"services {', '.join(names)}")
    text = json.dumps(safe, indent=2, sort_keys=True, default=str)
    return (
        f"<h2>Run configuration</h2>\n<p>{e('; '.join(facts) or 'config.json')}.</p>\n"
        f"<details><summary>config.json (secrets redacted)</summary><pre>{e(text)}</pre>"
        "</details>\n"
    )

"""soakwatch's pytest plugin (entry point ``pytest11``: ``soakwatch``).

- The ``soak`` marker, declared here so it works under ``--strict-markers`` with no ini of the
  user's: ``@pytest.mark.soak(scenario=None, *, services=(), complete=False, duration=None,
  max_growth=None, rules=None)``; its arguments are checked before the test runs.
- Soak tests are skipped unless asked for: ``RUN_SOAK_TESTS=1``, ``--run-soak`` or an explicit
  ``--soak-profile``. Tests marked ``complete=True`` (the complete suite) also need
  ``RUN_COMPLETE_SOAK_TEST=1``. The skip reason says how to ask.
- Options ``--soak-profile``, ``--soak-duration``, ``--soak-config``, ``--soak-inconclusive``,
  ``--soak-progress``, ``--soak-attribution`` and ini keys of the same names (``soak_profile``,
  ...); the environment (``SOAK_PROFILE``, ``SOAK_DURATION``, ...) sits between the two. All
  resolved once, at configure, in ``resolve_settings``: a bad value is one usage error (exit 4),
  not an error in every test.
- A test using ``soak_monitor`` is judged after its body: a leak fails it, and so does an
  inconclusive verdict unless ``--soak-inconclusive`` says skip or pass. With
  ``--soak-attribution`` (or the marker's ``attribution=True``) the monitor also samples
  allocation sites, and the failure names the top one: ``...; mostly at test_leak.py:7``.
- Fixtures: ``soak_config`` (the resolved profile), ``soak_services`` (availability of the
  services the test names), ``soak_monitor`` (in-process resource sampling), ``soak_run`` (a whole
  run against a target, returning its result and verdict).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import pytest

from soakwatch.durations import parse_duration
from soakwatch.errors import SoakwatchError
from soakwatch.extras import MissingExtraError, require_extra
from soakwatch.profiles import PROFILES, Profile, resolve_profile

if TYPE_CHECKING:
    from soakwatch.rules.model import Rule
    from soakwatch.run import RunResult
    from soakwatch.run.availability import Availability
    from soakwatch.run.config import RunConfig
    from soakwatch.sampling import SoakMonitor

__all__ = [
    "DEFAULT_TEST_DURATION",
    "MARKER_SIGNATURE",
    "PluginSettings",
    "SoakInconclusiveWarning",
    "SoakMarker",
    "inconclusive",
    "resolve_settings",
    "test_duration",
]

MARKER_SIGNATURE = (
    "soak(scenario=None, *, services=(), complete=False, duration=None, max_growth=None, "
    "rules=None, attribution=None)"
)
MARKER_HELP = (
    f"{MARKER_SIGNATURE}: a soak test (skipped unless RUN_SOAK_TESTS=1, --run-soak or "
    "--soak-profile is given). services: names from the soak config whose availability the test "
    "needs (required down: error; optional down: skip). complete=True: part of the complete "
    "suite, which also needs RUN_COMPLETE_SOAK_TEST=1. duration: how long "
    "soak_monitor.iterations() runs the body (default 10m; --soak-duration wins). max_growth: "
    "the memory threshold of soak_monitor, e.g. '2 MB/h' (default: the rules'). rules: a rules "
    "file (relative to the rootdir) whose memory_growth rule soak_monitor judges. "
    "attribution: True/False samples allocation sites in soak_monitor and names the top one in "
    "the verdict (default: --soak-attribution)."
)
DEFAULT_TEST_DURATION = 600.0  # the marker's duration when nothing says otherwise: 10m
DEFAULT_PROGRESS = 10.0  # seconds between progress lines with -s or -v
Inconclusive = Literal["fail", "skip", "pass"]
_POLICIES: dict[str, Inconclusive] = {"fail": "fail", "skip": "skip", "pass": "pass"}
HOW_TO_RUN = (
    "soak test: set RUN_SOAK_TESTS=1 or pass --soak-profile PROFILE (or --run-soak) to run it"
)
HOW_TO_RUN_COMPLETE = "complete soak suite: set RUN_COMPLETE_SOAK_TEST=1 to run it"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class PluginSettings:
    """Everything the plugin was told, from the command line, the environment and the ini."""

    enabled: bool
    complete_enabled: bool
    profile_name: str
    duration_seconds: float | None
    config_path: Path | None
    # where duration_seconds came from: "--soak-duration", "SOAK_DURATION", "ini soak_duration"
    duration_from: str = ""
    inconclusive: Inconclusive = "fail"
    progress_seconds: float = DEFAULT_PROGRESS
    attribution: bool = False


@dataclass(frozen=True)
class SoakMarker:
    """The arguments of one ``@pytest.mark.soak``, checked. ``duration_seconds``,
    ``max_growth_mb_per_hour``, ``rules`` and ``attribution`` are None when the marker does not
    give them."""

    scenario: str | None
    services: tuple[str, ...]
    complete: bool
    duration_seconds: float | None = None
    max_growth_mb_per_hour: float | None = None
    rules: Path | None = None
    attribution: bool | None = None


class SoakInconclusiveWarning(pytest.PytestWarning):
    """A soak test's verdict was inconclusive and ``--soak-inconclusive=pass`` let it pass."""


settings_key = pytest.StashKey[PluginSettings]()
profile_key = pytest.StashKey[Profile]()
run_config_key = pytest.StashKey["RunConfig | None"]()
marker_key = pytest.StashKey[SoakMarker]()
monitor_key = pytest.StashKey["SoakMonitor"]()
rules_cache_key = pytest.StashKey[dict[Path, "Rule"]]()


# -- options and settings ------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("soakwatch", "soak tests (soakwatch)")
    group.addoption(
        "--run-soak",
        action="store_true",
        default=None,
        help="run tests marked soak (same as RUN_SOAK_TESTS=1)",
    )
    group.addoption(
        "--soak-profile",
        metavar="PROFILE",
        help=f"soak profile ({', '.join(PROFILES)}); giving it runs the soak tests",
    )
    group.addoption(
        "--soak-duration", metavar="DURATION", help="override the profile's duration (e.g. 30m)"
    )
    group.addoption(
        "--soak-config",
        metavar="FILE",
        help="soak config (the file of 'soak run --config') naming the target and its services",
    )
    group.addoption(
        "--soak-inconclusive",
        metavar="fail|skip|pass",
        help="what an inconclusive verdict does to a soak test (default: fail)",
    )
    group.addoption(
        "--soak-progress",
        metavar="INTERVAL",
        help=f"a progress line this often with -s or -v (default {DEFAULT_PROGRESS:g}s; 0: none)",
    )
    group.addoption(
        "--soak-attribution",
        action="store_true",
        default=None,
        help="soak_monitor samples allocation sites (tracemalloc, 1 s windows a minute) and a "
        "leak's failure names the top one (same as SOAK_ATTRIBUTION=1)",
    )
    parser.addini("soak_profile", "default soak profile (ci, staging, production, demo)")
    parser.addini("soak_duration", "default override of the profile's duration")
    parser.addini("soak_config", "soak config file, relative to the rootdir")
    parser.addini("soak_inconclusive", "fail (default), skip or pass an inconclusive soak test")
    parser.addini("soak_progress", "seconds between progress lines with -s or -v (0: none)")
    parser.addini("soak_attribution", "1/0: soak_monitor samples allocation sites (default 0)")


def _flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise pytest.UsageError(f"{name}: expected 1/0, true/false, yes/no or on/off, got {raw!r}")


def resolve_settings(
    config: pytest.Config, environ: Mapping[str, str] | None = None
) -> PluginSettings:
    """Settings in one place: command line first, then environment, then ini, then defaults.

    Bad values are a ``pytest.UsageError`` naming the option, variable or ini key."""
    env = os.environ if environ is None else environ

    def pick(option: str, variable: str, ini: str) -> tuple[str | None, str]:
        value = config.getoption(option)
        if value is not None:
            return str(value), f"--{option.replace('_', '-')}"
        if env.get(variable):
            return env[variable], variable
        ini_value = config.getini(ini)
        if ini_value:
            return str(ini_value), f"ini {ini}"
        return None, ""

    profile_name, profile_from = pick("soak_profile", "SOAK_PROFILE", "soak_profile")
    if profile_name is not None and profile_name not in PROFILES:
        raise pytest.UsageError(
            f"{profile_from}: unknown soak profile {profile_name!r} "
            f"(choose from {', '.join(PROFILES)})"
        )
    duration_text, duration_from = pick("soak_duration", "SOAK_DURATION", "soak_duration")
    duration_seconds = None
    if duration_text is not None:
        try:
            duration_seconds = parse_duration(duration_text)
        except ValueError as exc:
            raise pytest.UsageError(f"{duration_from}: {exc}") from None
        if duration_seconds <= 0:
            raise pytest.UsageError(
                f"{duration_from}: must be greater than 0, got {duration_text!r}"
            )
    config_text, config_from = pick("soak_config", "SOAK_CONFIG", "soak_config")
    config_path = None
    if config_text is not None:
        config_path = Path(config_text)
        if config_from.startswith("ini") and not config_path.is_absolute():
            config_path = _rootdir(config) / config_path
    inconclusive_text, inconclusive_from = pick(
        "soak_inconclusive", "SOAK_INCONCLUSIVE", "soak_inconclusive"
    )
    inconclusive: Inconclusive = "fail"
    if inconclusive_text is not None:
        try:
            inconclusive = _POLICIES[inconclusive_text.strip().lower()]
        except KeyError:
            raise pytest.UsageError(
                f"{inconclusive_from}: expected fail, skip or pass, got {inconclusive_text!r}"
            ) from None
    progress_text, progress_from = pick("soak_progress", "SOAK_PROGRESS", "soak_progress")
    progress_seconds = DEFAULT_PROGRESS
    if progress_text is not None:
        try:
            progress_seconds = parse_duration(progress_text)
        except ValueError as exc:
            raise pytest.UsageError(f"{progress_from}: {exc}") from None
    enabled = bool(config.getoption("run_soak")) or config.getoption("soak_profile") is not None
    if not enabled:
        enabled = _flag("RUN_SOAK_TESTS", env.get("RUN_SOAK_TESTS", ""))
    complete_enabled = _flag("RUN_COMPLETE_SOAK_TEST", env.get("RUN_COMPLETE_SOAK_TEST", ""))
    attribution_text, attribution_from = pick(
        "soak_attribution", "SOAK_ATTRIBUTION", "soak_attribution"
    )
    attribution = attribution_text is not None and _flag(attribution_from, attribution_text)
    return PluginSettings(
        enabled=enabled,
        complete_enabled=complete_enabled,
        profile_name=profile_name or "ci",
        duration_seconds=duration_seconds,
        config_path=config_path,
        duration_from=duration_from,
        inconclusive=inconclusive,
        progress_seconds=progress_seconds,
        attribution=attribution,
    )


def resolve_profile_settings(
    settings: PluginSettings, environ: Mapping[str, str] | None = None
) -> Profile:
    """The profile of ``settings`` with its environment overrides (``SOAK_TEST_DURATION_HOURS``,
    ...) and ``--soak-duration`` applied. A bad override is a ``pytest.UsageError`` naming the
    variable."""
    try:
        profile = resolve_profile(settings.profile_name, environ)
    except SoakwatchError as exc:
        raise pytest.UsageError(str(exc)) from None
    if settings.duration_seconds is not None:
        profile = dataclasses.replace(profile, duration_seconds=settings.duration_seconds)
    return profile


def _rootdir(config: pytest.Config) -> Path:
    return Path(str(config.rootpath))


def pytest_configure(config: pytest.Config) -> None:
    """Every setting is checked here, once: a bad one stops the session as one usage error."""
    config.addinivalue_line("markers", MARKER_HELP)
    settings = resolve_settings(config)
    config.stash[settings_key] = settings
    config.stash[profile_key] = resolve_profile_settings(settings)
    config.stash[rules_cache_key] = {}
    if settings.enabled and settings.config_path is not None:
        _run_config(config)  # a bad soak config: one usage error before any test


def pytest_collection_finish(session: pytest.Session) -> None:
    """The bundled suite judges a target named by the soak config: without one it is a usage
    error, not eight failures."""
    if _settings(session.config).config_path is not None or not session.items:
        return
    spec = importlib.util.find_spec("soakwatch.suite")
    if spec is None or spec.origin is None:
        return
    suite = Path(spec.origin).resolve()
    if any(Path(item.path).resolve() == suite for item in session.items):
        raise pytest.UsageError(
            "the soak suite (soakwatch.suite) needs a target: "
            "--soak-config soak.yaml (or SOAK_CONFIG, or ini soak_config)"
        )


def _settings(config: pytest.Config) -> PluginSettings:
    return config.stash[settings_key]


# -- the marker ----------------------------------------------------------------------------------
def _parse_marker(
    scenario: Any = None,
    *,
    services: Any = (),
    complete: Any = False,
    duration: Any = None,
    max_growth: Any = None,
    rules: Any = None,
    attribution: Any = None,
) -> SoakMarker:
    if scenario is not None and not isinstance(scenario, str):
        raise TypeError(f"scenario must be a string, got {scenario!r}")
    if isinstance(services, str):
        services = (services,)
    if not isinstance(services, (list, tuple)) or not all(isinstance(s, str) for s in services):
        raise TypeError(f"services must be a list of service names, got {services!r}")
    if not isinstance(complete, bool):
        raise TypeError(f"complete must be True or False, got {complete!r}")
    duration_seconds = None
    if duration is not None:
        try:
            duration_seconds = parse_duration(duration)
        except ValueError:
            duration_seconds = -1.0
        if not duration_seconds > 0:
            raise TypeError(
                f"duration must be a duration greater than 0 such as '10m' or '30s', "
                f"got {duration!r}"
            )
    growth = None if max_growth is None else _growth_mb_per_hour(max_growth)
    if rules is not None and not isinstance(rules, (str, os.PathLike)):
        raise TypeError(f"rules must be a rules file or a packaged name, got {rules!r}")
    if attribution is not None and not isinstance(attribution, bool):
        raise TypeError(f"attribution must be True or False, got {attribution!r}")
    return SoakMarker(
        scenario,
        tuple(services),
        complete,
        duration_seconds,
        growth,
        None if rules is None else Path(rules),
        attribution,
    )


_GROWTH = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]+/h)\s*\Z")


def _growth_mb_per_hour(value: Any) -> float:
    """MB/h from "2 MB/h", "512 KiB/h", ... (the slope units of the rules) or a number of MB/h."""
    from soakwatch.rules.model import UNITS

    units = [unit for unit, (base, _) in UNITS.items() if base == "bytes/hour"]
    mb = float("nan")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        mb = float(value)
    elif isinstance(value, str):
        found = _GROWTH.match(value)
        if found and found.group(2) in UNITS and UNITS[found.group(2)][0] == "bytes/hour":
            mb = float(found.group(1)) * UNITS[found.group(2)][1] / 1e6
    if not (math.isfinite(mb) and mb > 0):
        raise TypeError(
            f"max_growth must be a memory growth greater than 0 such as '2 MB/h' "
            f"(units: {', '.join(units)}; a bare number is MB/h), got {value!r}"
        )
    return mb


def _bad_marker(reason: str) -> NoReturn:
    pytest.fail(f"bad @pytest.mark.{MARKER_SIGNATURE}: {reason}", pytrace=False)


def soak_marker(item: pytest.Item) -> SoakMarker | None:
    """The checked arguments of the item's closest ``soak`` marker (None when unmarked); a
    ``rules`` path is made absolute (relative to the rootdir) and its memory rule read."""
    marker = item.get_closest_marker("soak")
    if marker is None:
        return None
    if marker_key in item.stash:
        return item.stash[marker_key]
    try:
        parsed = _parse_marker(*marker.args, **marker.kwargs)
    except TypeError as exc:
        _bad_marker(str(exc).replace("_parse_marker()", "soak()"))
    if parsed.rules is not None:
        from soakwatch.rules.model import resolve_rules

        try:
            # a packaged name (a preset such as "quick", a pack such as "node") or a path
            path = resolve_rules(str(parsed.rules), base_dir=_rootdir(item.config))
            parsed = dataclasses.replace(parsed, rules=path)
            _marker_rule(item.config, path)
        except SoakwatchError as exc:
            _bad_marker(f"rules: {exc}")
    item.stash[marker_key] = parsed
    return parsed


def _marker_rule(config: pytest.Config, path: Path | None) -> Rule:
    """The memory rule soak_monitor judges: ``memory_growth`` of the marker's rules file (or the
    shipped one), read once per file and session. Raises ConfigError."""
    from soakwatch.sampling import memory_rule

    key = path if path is not None else Path("")
    cache = config.stash.setdefault(rules_cache_key, {})
    if key not in cache:
        if path is not None and not path.is_file():
            from soakwatch.errors import ConfigError

            raise ConfigError(f"no such rules file: {path}")
        cache[key] = memory_rule(0.0, path)
    return cache[key]


def _overridden_duration(settings: PluginSettings) -> float | None:
    """The duration of ``--soak-duration`` or ``SOAK_DURATION`` (which beat a marker's), not of
    the ini file (which a marker beats)."""
    if settings.duration_from.startswith("ini"):
        return None
    return settings.duration_seconds


def _attribution(settings: PluginSettings, marker: SoakMarker | None) -> bool:
    """Whether soak_monitor samples allocation sites: the marker's ``attribution=`` when it gives
    one, else ``--soak-attribution`` / SOAK_ATTRIBUTION / ini soak_attribution (off)."""
    if marker is not None and marker.attribution is not None:
        return marker.attribution
    return settings.attribution


def test_duration(settings: PluginSettings, marker: SoakMarker | None) -> float:
    """How long a soak test's body runs (``soak_monitor.iterations()``): ``--soak-duration`` or
    ``SOAK_DURATION``, else the marker's ``duration=``, else ini ``soak_duration``, else 10m."""
    overridden = _overridden_duration(settings)
    if overridden is not None:
        return overridden
    if marker is not None and marker.duration_seconds is not None:
        return marker.duration_seconds
    if settings.duration_seconds is not None:
        return settings.duration_seconds
    return DEFAULT_TEST_DURATION


test_duration.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test to collect


def inconclusive(config: pytest.Config, message: str) -> None:
    """Apply ``--soak-inconclusive`` to an inconclusive verdict described by ``message`` (which
    says "inconclusive" and why): fail the test (the default), skip it, or let it pass with a
    ``SoakInconclusiveWarning``."""
    policy = _settings(config).inconclusive
    if policy == "fail":
        pytest.fail(
            f"{message}\n(an inconclusive soak test fails: run it longer, or pass "
            "--soak-inconclusive=skip|pass)",
            pytrace=False,
        )
    if policy == "skip":
        pytest.skip(message)
    warnings.warn(SoakInconclusiveWarning(message), stacklevel=2)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = soak_marker(item)
    if marker is None:
        return
    settings = _settings(item.config)
    if not settings.enabled:
        pytest.skip(HOW_TO_RUN)
    if marker.complete and not settings.complete_enabled:
        pytest.skip(HOW_TO_RUN_COMPLETE)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """After a body that passed: judge the memory of a test that used ``soak_monitor`` and did
    not ask for the verdict itself. A leak fails the test; an inconclusive verdict goes by
    ``--soak-inconclusive`` (fail by default)."""
    result = yield
    monitor = item.stash.get(monitor_key, None)
    if monitor is not None and not monitor.verdict_seen:
        verdict = monitor.judge()
        if verdict.status == "fail":
            pytest.fail(f"soak_monitor: {verdict.summary}", pytrace=False)
        if verdict.status == "inconclusive":
            inconclusive(item.config, f"soak_monitor: inconclusive: {verdict.summary}")
    return result


def _progress_writer(config: pytest.Config, label: str) -> Callable[[str], None] | None:
    """A function writing ``label: text`` lines to the terminal while a test runs, when the
    user watches (``-s`` or ``-v``) and progress is not off; None otherwise."""
    seconds = _settings(config).progress_seconds
    watching = config.get_verbosity() > 0 or config.getoption("capture") == "no"
    if not seconds > 0 or not watching:
        return None
    first = True

    def write(text: str) -> None:
        nonlocal first
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        suspended = (
            capture.global_and_fixture_disabled()
            if capture is not None
            else contextlib.nullcontext()
        )
        with suspended:
            if reporter is None:
                sys.stderr.write(f"{label}: {text}\n")
                return
            if first:  # the reporter's line holds the test's name: start a new one
                reporter.write("\n")
                first = False
            reporter.write_line(f"{label}: {text}")

    return write


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def soak_config(pytestconfig: pytest.Config) -> Profile:
    """The resolved soak profile: ``--soak-profile`` with environment overrides and
    ``--soak-duration`` applied."""
    if profile_key not in pytestconfig.stash:  # the plugin configured late (pytest -p ...)
        pytestconfig.stash[profile_key] = resolve_profile_settings(_settings(pytestconfig))
    return pytestconfig.stash[profile_key]


def _run_config(config: pytest.Config) -> RunConfig | None:
    if run_config_key not in config.stash:
        from soakwatch.run.config import load_run_config

        path = _settings(config).config_path
        try:
            config.stash[run_config_key] = load_run_config(path) if path else None
        except SoakwatchError as exc:
            raise pytest.UsageError(f"soak config: {exc}") from None
    return config.stash[run_config_key]


@pytest.fixture
def soak_services(request: pytest.FixtureRequest) -> dict[str, Availability]:
    """Availability of the services the test's marker names (all configured ones when it names
    none), by name. A required service down is an error listing each; an optional one down
    skips the test with the reason."""
    from soakwatch.run.availability import check_all, describe_down

    run_config = _run_config(request.config)
    marker = soak_marker(request.node) if isinstance(request.node, pytest.Item) else None
    wanted = marker.services if marker else ()
    configured = {c.name: c for c in run_config.checks} if run_config else {}
    missing = [name for name in wanted if name not in configured]
    if missing:
        where = _settings(request.config).config_path or "no soak config (--soak-config FILE)"
        pytest.fail(f"service(s) {', '.join(missing)} not configured in {where}", pytrace=False)
    checks = [configured[name] for name in wanted] if wanted else list(configured.values())
    results = check_all(checks)
    required_down = [r for r in results if not r.up and r.service.required]
    if required_down:
        pytest.fail(
            "required service(s) unavailable:\n" + describe_down(required_down), pytrace=False
        )
    optional_down = [r for r in results if not r.up]
    if optional_down:
        names = ", ".join(f"{r.service.name} ({r.reason})" for r in optional_down)
        pytest.skip(f"optional service(s) unavailable: {names}")
    return {r.service.name: r for r in results}


@pytest.fixture
def soak_monitor(request: pytest.FixtureRequest, soak_config: Profile) -> Iterator[SoakMonitor]:
    """Samples this process's RSS, threads, fds and GC in a background thread for the whole
    test. ``for _ in soak_monitor.iterations(): ...`` runs the body for the test's duration
    (marker ``duration=``, ``--soak-duration``; 10m by default) with progress lines under -s or
    -v. After the body, the memory is judged (marker ``max_growth=`` / ``rules=``) unless the test
    called ``soak_monitor.verdict()`` itself: a leak fails the test, an inconclusive verdict too
    (``--soak-inconclusive``). Without the analyzer extra this is an error before the body. With
    the marker's ``attribution=True`` (or ``--soak-attribution``) allocation sites of the code
    under the rootdir are sampled too, and a failing verdict names the top one."""
    from soakwatch.sampling import SoakMonitor, monitor_interval, test_attribution_config

    item = request.node if isinstance(request.node, pytest.Item) else None
    marker = soak_marker(item) if item is not None else None
    settings = _settings(request.config)
    duration = test_duration(settings, marker)
    try:
        require_extra("analyzer")
        rule = _marker_rule(request.config, marker.rules if marker else None)
    except MissingExtraError as exc:
        pytest.fail(f"soak_monitor: {exc}", pytrace=False)
    except SoakwatchError as exc:
        pytest.fail(f"soak_monitor: rules: {exc}", pytrace=False)
    attribution = _attribution(settings, marker)
    if attribution and item is not None:
        from soakwatch.exporter.attribution import function_at

        # the test's own file is the likeliest site: read its functions now, not as a step in
        # the RSS the monitor judges
        function_at(str(item.path), 0)
    monitor = SoakMonitor(
        interval_seconds=monitor_interval(soak_config.sampling_interval_seconds, duration),
        threshold_mb_per_hour=marker.max_growth_mb_per_hour if marker else None,
        duration_seconds=duration,
        rule=rule,
        progress=_progress_writer(request.config, f"soak {request.node.name}"),
        progress_every=settings.progress_seconds,
        attribution=(
            test_attribution_config(duration, _rootdir(request.config)) if attribution else False
        ),
    ).start()
    if item is not None:
        item.stash[monitor_key] = monitor
    yield monitor
    monitor.stop()


@pytest.fixture
def soak_run(
    request: pytest.FixtureRequest, soak_config: Profile, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., RunResult]:
    """``soak_run(config=None, *, duration=None, scenarios=None)``: a whole ``soak run`` against
    the configured target (or ``config``, a path or a mapping in the soak config format), with
    the profile of ``soak_config``. Returns the result, whose ``verdict`` is the analyzer's."""
    try:
        # the verdict is the analyzer's: say so before the run, not after its whole duration
        require_extra("analyzer")
    except MissingExtraError as exc:
        pytest.fail(f"soak_run: {exc}", pytrace=False)
    from soakwatch.run import RunRequest, execute
    from soakwatch.run.config import RunConfig, load_run_config, parse_run_config

    marker = soak_marker(request.node) if isinstance(request.node, pytest.Item) else None
    write = _progress_writer(request.config, f"soak_run {request.node.name}")
    every = _settings(request.config).progress_seconds
    last_line = [-math.inf]

    def progress(text: str, final: bool) -> None:
        # the run's status line comes every scrape: show one every --soak-progress seconds
        if write is None:
            return
        now = time.monotonic()
        if final or now - last_line[0] >= every:
            last_line[0] = now
            write(text)

    def run(
        config: str | os.PathLike[str] | Mapping[str, Any] | RunConfig | None = None,
        *,
        duration: str | float | None = None,
        scenarios: list[str] | tuple[str, ...] | None = None,
    ) -> RunResult:
        if config is None:
            run_config = _run_config(request.config)
            if run_config is None:
                pytest.fail("soak_run needs a soak config: --soak-config FILE", pytrace=False)
        elif isinstance(config, RunConfig):
            run_config = config
        elif isinstance(config, Mapping):
            run_config = parse_run_config(config, source="soak_run(config=...)")
        else:
            run_config = load_run_config(config)
        # duration= wins, then --soak-duration or SOAK_DURATION, then the marker's duration=,
        # then ini soak_duration, then the config file's, then the profile's
        settings = _settings(request.config)
        if duration is not None:
            seconds = parse_duration(duration)
        elif (overridden := _overridden_duration(settings)) is not None:
            seconds = overridden
        elif marker is not None and marker.duration_seconds is not None:
            seconds = marker.duration_seconds
        elif settings.duration_seconds is None and run_config.duration_seconds:
            seconds = run_config.duration_seconds
        else:
            seconds = soak_config.duration_seconds
        if marker is not None and marker.rules is not None:
            run_config = dataclasses.replace(run_config, rules_path=marker.rules)
        out = tmp_path_factory.mktemp("soak-run")
        try:
            return execute(
                RunRequest(
                    config=run_config,
                    profile=dataclasses.replace(soak_config, duration_seconds=seconds),
                    out_dir=out,
                    only_scenarios=tuple(scenarios) if scenarios is not None else None,
                    progress=progress,
                )
            )
        except SoakwatchError as exc:
            pytest.fail(f"soak_run: {exc}", pytrace=False)

    return run

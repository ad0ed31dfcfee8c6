"""soakwatch's pytest plugin (entry point ``pytest11``: ``soakwatch``).

- The ``soak`` marker, declared here so it works under ``--strict-markers`` with no ini of the
  user's: ``@pytest.mark.soak(scenario=None, *, services=(), complete=False)``.
- Soak tests are skipped unless asked for: ``RUN_SOAK_TESTS=1``, ``--run-soak`` or an explicit
  ``--soak-profile``. Tests marked ``complete=True`` (the complete suite) also need
  ``RUN_COMPLETE_SOAK_TEST=1``. The skip reason says how to ask.
- Options ``--soak-profile``, ``--soak-duration``, ``--soak-config`` and ini keys of the same
  names (``soak_profile``, ``soak_duration``, ``soak_config``); the environment
  (``SOAK_PROFILE``, ``SOAK_DURATION``, ``SOAK_CONFIG``) sits between the two. All resolved in
  ``resolve_settings``.
- Fixtures: ``soak_config`` (the resolved profile), ``soak_services`` (availability of the
  services the test names), ``soak_monitor`` (in-process resource sampling), ``soak_run`` (a whole
  run against a target, returning its result and verdict).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from soakwatch.durations import parse_duration
from soakwatch.errors import SoakwatchError
from soakwatch.extras import MissingExtraError, require_extra
from soakwatch.profiles import PROFILES, Profile, resolve_profile

if TYPE_CHECKING:
    from soakwatch.run import RunResult
    from soakwatch.run.availability import Availability
    from soakwatch.run.config import RunConfig
    from soakwatch.sampling import SoakMonitor

__all__ = ["MARKER_SIGNATURE", "PluginSettings", "SoakMarker", "resolve_settings"]

MARKER_SIGNATURE = "soak(scenario=None, *, services=(), complete=False)"
MARKER_HELP = (
    f"{MARKER_SIGNATURE}: a soak test (skipped unless RUN_SOAK_TESTS=1, --run-soak or "
    "--soak-profile is given). services: names from the soak config whose availability the test "
    "needs (required down: error; optional down: skip). complete=True: part of the complete "
    "suite, which also needs RUN_COMPLETE_SOAK_TEST=1."
)
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


@dataclass(frozen=True)
class SoakMarker:
    """The arguments of one ``@pytest.mark.soak``, checked."""

    scenario: str | None
    services: tuple[str, ...]
    complete: bool


settings_key = pytest.StashKey[PluginSettings]()
run_config_key = pytest.StashKey["RunConfig | None"]()


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
    parser.addini("soak_profile", "default soak profile (ci, staging, production, demo)")
    parser.addini("soak_duration", "default override of the profile's duration")
    parser.addini("soak_config", "soak config file, relative to the rootdir")


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
    enabled = bool(config.getoption("run_soak")) or config.getoption("soak_profile") is not None
    if not enabled:
        enabled = _flag("RUN_SOAK_TESTS", env.get("RUN_SOAK_TESTS", ""))
    complete_enabled = _flag("RUN_COMPLETE_SOAK_TEST", env.get("RUN_COMPLETE_SOAK_TEST", ""))
    return PluginSettings(
        enabled=enabled,
        complete_enabled=complete_enabled,
        profile_name=profile_name or "ci",
        duration_seconds=duration_seconds,
        config_path=config_path,
    )


def _rootdir(config: pytest.Config) -> Path:
    return Path(str(config.rootpath))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    config.stash[settings_key] = resolve_settings(config)


def _settings(config: pytest.Config) -> PluginSettings:
    return config.stash[settings_key]


# -- the marker ----------------------------------------------------------------------------------
def _parse_marker(scenario: Any = None, *, services: Any = (), complete: Any = False) -> SoakMarker:
    if scenario is not None and not isinstance(scenario, str):
        raise TypeError(f"scenario must be a string, got {scenario!r}")
    if isinstance(services, str):
        services = (services,)
    if not isinstance(services, (list, tuple)) or not all(isinstance(s, str) for s in services):
        raise TypeError(f"services must be a list of service names, got {services!r}")
    if not isinstance(complete, bool):
        raise TypeError(f"complete must be True or False, got {complete!r}")
    return SoakMarker(scenario, tuple(services), complete)


def soak_marker(item: pytest.Item) -> SoakMarker | None:
    """The checked arguments of the item's closest ``soak`` marker (None when unmarked)."""
    marker = item.get_closest_marker("soak")
    if marker is None:
        return None
    try:
        return _parse_marker(*marker.args, **marker.kwargs)
    except TypeError as exc:
        reason = str(exc).replace("_parse_marker()", "soak()")
        pytest.fail(f"bad @pytest.mark.{MARKER_SIGNATURE}: {reason}", pytrace=False)


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


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def soak_config(pytestconfig: pytest.Config) -> Profile:
    """The resolved soak profile: ``--soak-profile`` with environment overrides and
    ``--soak-duration`` applied."""
    settings = _settings(pytestconfig)
    try:
        profile = resolve_profile(settings.profile_name)
    except SoakwatchError as exc:
        raise pytest.UsageError(str(exc)) from None
    if settings.duration_seconds is not None:
        profile = dataclasses.replace(profile, duration_seconds=settings.duration_seconds)
    return profile


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
def soak_monitor(soak_config: Profile) -> Iterator[SoakMonitor]:
    """Samples this process's RSS, threads, fds and GC in a background thread for the whole
    test. Call ``soak_monitor.verdict()`` to stop and get the memory verdict; it is also judged
    at teardown, which errors when the memory rule fails."""
    from soakwatch.sampling import SoakMonitor

    interval = min(soak_config.sampling_interval_seconds, 1.0)
    try:
        monitor = SoakMonitor(interval_seconds=interval).start()
    except MissingExtraError as exc:
        pytest.fail(f"soak_monitor: {exc}", pytrace=False)
    yield monitor
    judged_by_test = monitor.verdict_seen
    verdict = monitor.verdict()
    if verdict.status == "fail" and not judged_by_test:
        pytest.fail(f"soak_monitor: {verdict.summary}", pytrace=False)


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
        # duration= wins, then --soak-duration, then the config file's, then the profile's
        if duration is not None:
            seconds = parse_duration(duration)
        elif _settings(request.config).duration_seconds is None and run_config.duration_seconds:
            seconds = run_config.duration_seconds
        else:
            seconds = soak_config.duration_seconds
        out = tmp_path_factory.mktemp("soak-run")
        try:
            return execute(
                RunRequest(
                    config=run_config,
                    profile=dataclasses.replace(soak_config, duration_seconds=seconds),
                    out_dir=out,
                    only_scenarios=tuple(scenarios) if scenarios is not None else None,
                )
            )
        except SoakwatchError as exc:
            pytest.fail(f"soak_run: {exc}", pytrace=False)

    return run

"""The exporter's configuration, parsed at the border into frozen values (``Record``
classes, which behave as frozen dataclasses without importing dataclasses: see
soakwatch.records).

A config file (``soak-exporter --config FILE``)::

    listen: 127.0.0.1:9464
    scan_interval: 5s
    detail_interval: 30s
    services:
      - name: api
        match: {cmdline: 'gunicorn .*myapp:app'}
        pools:
          - {name: postgres, port: 5432, host: 127.0.0.1}
        probes:
          - {name: health, kind: http, target: 'http://127.0.0.1:8000/health'}
        pprof: http://127.0.0.1:6060   # a Go service's net/http/pprof: its allocation sites

Environment variables ``SOAK_EXPORTER_LISTEN`` and ``SOAK_EXPORTER_SCAN_INTERVAL`` override the
file; command-line flags override both. Every error names the file (or variable) and the key.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from soakwatch.addresses import Address, parse_address
from soakwatch.configfile import Section, env_override
from soakwatch.durations import parse_duration
from soakwatch.errors import ConfigError
from soakwatch.records import Record

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "CHILDREN_MODES",
    "DEFAULT_CHILDREN",
    "DEFAULT_DETAIL_INTERVAL_SECONDS",
    "DEFAULT_LISTEN",
    "DEFAULT_SCAN_INTERVAL_SECONDS",
    "ExporterConfig",
    "ListenAddress",
    "MatchSpec",
    "PoolSpec",
    "ServiceConfig",
    "load_config",
    "parse_config",
    "parse_listen",
]

DEFAULT_LISTEN = "127.0.0.1:9464"
DEFAULT_SCAN_INTERVAL_SECONDS = 5.0
DEFAULT_DETAIL_INTERVAL_SECONDS = 30.0
MATCH_KINDS = ("pid", "pidfile", "cmdline")
# How a matched process and its descendants (pre-fork workers) are published: ``sum`` as one
# service under the single-process series names, ``each`` as one series per member with a
# ``worker`` label. ``sum`` is the default: a process without children reads the same under it
# as before, and for a pre-fork server (gunicorn, uwsgi, celery) the master alone means nothing.
CHILDREN_MODES = ("sum", "each")
DEFAULT_CHILDREN = "sum"


# Where /metrics is served; ``port`` 0 asks the OS for a free port.
ListenAddress = Address


def parse_listen(text: object) -> ListenAddress:
    """``"127.0.0.1:9464"``, ``"[::1]:9464"``, ``"localhost:9464"`` or ``":9464"`` (every IPv4
    interface), by the one grammar of ``soakwatch.addresses``. Raises ValueError with a reason."""
    return parse_address(text, any_host="0.0.0.0", allow_port_zero=True)


class MatchSpec(Record):
    """How to find a service's process: exactly one of a PID, a pidfile or a command-line
    regular expression (searched in the arguments joined by spaces), and how its descendants
    count (``children``: ``sum`` or ``each``, see ``CHILDREN_MODES``)."""

    __slots__ = ("pid", "pidfile", "cmdline", "children")  # noqa: RUF023  # in field order
    pid: int | None
    pidfile: Path | None
    cmdline: str | None
    children: str

    def __init__(
        self,
        pid: int | None = None,
        pidfile: Path | None = None,
        cmdline: str | None = None,
        children: str = DEFAULT_CHILDREN,
    ) -> None:
        self._init(pid=pid, pidfile=pidfile, cmdline=cmdline, children=children)
        given = [k for k in MATCH_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"exactly one of {', '.join(MATCH_KINDS)} is required")
        if self.children not in CHILDREN_MODES:
            raise ValueError(
                f"children must be one of {', '.join(CHILDREN_MODES)}, got {self.children!r}"
            )

    def describe(self) -> str:
        if self.pid is not None:
            what = f"pid {self.pid}"
        elif self.pidfile is not None:
            what = f"pidfile {self.pidfile}"
        else:
            what = f"cmdline /{self.cmdline}/"
        return what if self.children == DEFAULT_CHILDREN else f"{what}, children: {self.children}"

    @classmethod
    def from_section(cls, section: Section) -> MatchSpec:
        present = section.keys()
        for key in present:
            if key not in (*MATCH_KINDS, "children"):
                raise section.error(key, "unknown key")
        children = section.string("children", DEFAULT_CHILDREN, choices=CHILDREN_MODES)
        given = [k for k in MATCH_KINDS if k in present]
        if len(given) != 1:
            raise ConfigError(
                f"exactly one of {', '.join(MATCH_KINDS)} is required",
                source=section.source,
                key=section.path,
            )
        kind = given[0]
        if kind == "pid":
            spec = cls(pid=section.number("pid", minimum=1, integer=True), children=children)
        elif kind == "pidfile":
            from pathlib import Path  # only for a pidfile: pathlib is 0.4 MB of RSS

            spec = cls(pidfile=Path(section.string("pidfile")), children=children)
        else:
            spec = cls(cmdline=section.convert("cmdline", _check_regex), children=children)
        section.finish()
        return spec


def _check_regex(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a regular expression, got {value!r}")
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


class PoolSpec(Record):
    """A connection pool seen from outside: TCP connections from the process to ``port`` (on
    ``host`` if given, on any address otherwise). ``addresses`` is ``host`` resolved once."""

    __slots__ = ("name", "port", "host", "addresses")  # noqa: RUF023  # in field order
    name: str
    port: int
    host: str | None
    addresses: frozenset[str]

    def __init__(
        self,
        name: str,
        port: int,
        host: str | None = None,
        addresses: frozenset[str] = frozenset(),
    ) -> None:
        self._init(name=name, port=port, host=host, addresses=addresses)

    @classmethod
    def from_section(cls, section: Section) -> PoolSpec:
        name = section.string("name")
        port = section.number("port", minimum=1, maximum=65535, integer=True)
        host = section.string("host", None)
        addresses: frozenset[str] = frozenset()
        if host is not None:
            addresses = section.convert("host", resolve_host)
        section.finish()
        return cls(name=name, port=port, host=host, addresses=addresses)


def resolve_host(host: object) -> frozenset[str]:
    """Every address ``host`` stands for, in the canonical text form psutil reports."""
    import ipaddress  # only for a pool's host: 0.45 MB a sidecar otherwise never needs

    if not isinstance(host, str) or not host:
        raise ValueError(f"expected a host name or address, got {host!r}")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return frozenset({str(ipaddress.ip_address(bare))})
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(bare, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        raise ValueError(f"cannot resolve host {host!r}") from None
    return frozenset(str(ipaddress.ip_address(str(info[4][0]).split("%")[0])) for info in infos)


class ServiceConfig(Record):
    """One watched service: its name (the ``service`` label), how to find its process, the pools
    to count and the health probes (``ProbeSpec`` objects of ``soakwatch.exporter.probes``)."""

    __slots__ = ("name", "match", "pools", "probes", "pprof")  # noqa: RUF023  # in field order
    name: str
    match: MatchSpec
    pools: tuple[PoolSpec, ...]
    probes: tuple[Any, ...]
    #: a Go service's heap profile (``pprof: URL``), a ``soakwatch.exporter.pprof.PprofSpec``
    pprof: Any

    def __init__(
        self,
        name: str,
        match: MatchSpec,
        pools: tuple[PoolSpec, ...] = (),
        probes: tuple[Any, ...] = (),
        pprof: Any = None,
    ) -> None:
        self._init(name=name, match=match, pools=pools, probes=probes, pprof=pprof)

    @classmethod
    def from_section(cls, section: Section) -> ServiceConfig:
        name = section.string("name")
        if not name.strip():
            raise section.error("name", "must not be empty")
        match = MatchSpec.from_section(section.section("match", required=True))
        pools = tuple(PoolSpec.from_section(s) for s in section.sections("pools"))
        _check_unique([p.name for p in pools], section, "pools", "pool")
        probe_sections = list(section.sections("probes"))
        probes = _parse_probes(probe_sections, section)
        _check_unique([p.name for p in probes], section, "probes", "probe")
        pprof = None
        if section.raw("pprof", None) is not None:
            from soakwatch.exporter.pprof import PprofSpec

            pprof = PprofSpec.from_value(section, "pprof")
        section.finish()
        return cls(name=name, match=match, pools=pools, probes=probes, pprof=pprof)


def _parse_probes(items: Sequence[Section], parent: Section) -> tuple[Any, ...]:
    if not items:
        return ()
    try:
        from soakwatch.exporter.probes import parse_probe
    except ImportError:
        raise parent.error("probes", "health probes are not available in this build") from None
    return tuple(parse_probe(item) for item in items)


def _check_unique(names: list[str], section: Section, key: str, what: str) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            raise ConfigError(
                f"duplicate {what} name {name!r}",
                source=section.source,
                key=f"{section.key_path(key)}[{index}].name",
            )
        seen.add(name)


class ExporterConfig(Record):
    """The whole sidecar exporter: where to serve, how often to look for restarted processes,
    how often to read the costly memory details (USS/PSS), and the services."""

    __slots__ = ("services", "listen", "scan_interval_seconds", "detail_interval_seconds")  # noqa: RUF023  # in field order
    services: tuple[ServiceConfig, ...]
    listen: ListenAddress
    scan_interval_seconds: float
    detail_interval_seconds: float

    def __init__(
        self,
        services: tuple[ServiceConfig, ...],
        listen: ListenAddress | None = None,
        scan_interval_seconds: float = DEFAULT_SCAN_INTERVAL_SECONDS,
        detail_interval_seconds: float = DEFAULT_DETAIL_INTERVAL_SECONDS,
    ) -> None:
        self._init(
            services=services,
            listen=parse_listen(DEFAULT_LISTEN) if listen is None else listen,
            scan_interval_seconds=scan_interval_seconds,
            detail_interval_seconds=detail_interval_seconds,
        )

    @classmethod
    def from_section(cls, section: Section) -> ExporterConfig:
        listen = section.convert("listen", parse_listen, parse_listen(DEFAULT_LISTEN))
        scan = section.duration("scan_interval", DEFAULT_SCAN_INTERVAL_SECONDS, minimum=0.1)
        detail = section.duration(
            "detail_interval", DEFAULT_DETAIL_INTERVAL_SECONDS, minimum=0.0, exclusive_minimum=None
        )
        services = tuple(
            ServiceConfig.from_section(s) for s in section.sections("services", required=True)
        )
        if not services:
            raise section.error("services", "at least one service is required")
        _check_unique([s.name for s in services], section, "services", "service")
        section.finish()
        return cls(
            services=services,
            listen=listen,
            scan_interval_seconds=scan,
            detail_interval_seconds=detail,
        )

    def with_environment(self, environ: Mapping[str, str] | None = None) -> ExporterConfig:
        """This config with ``SOAK_EXPORTER_LISTEN`` / ``SOAK_EXPORTER_SCAN_INTERVAL`` applied."""
        listen = env_override("SOAK_EXPORTER_LISTEN", parse_listen, self.listen, environ)
        scan = env_override(
            "SOAK_EXPORTER_SCAN_INTERVAL", _positive_duration, self.scan_interval_seconds, environ
        )
        return self.replace(listen=listen, scan_interval_seconds=scan)


def _positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if not seconds >= 0.1:
        raise ValueError(f"must be at least 0.1 seconds, got {text!r}")
    return seconds


def parse_config(data: Any, *, source: str) -> ExporterConfig:
    """An ExporterConfig from already-loaded YAML data (``source`` names it in errors)."""
    return ExporterConfig.from_section(Section(data, source=source))


def load_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> ExporterConfig:
    """Read and validate a config file, then apply the environment overrides."""
    return ExporterConfig.from_section(Section.load(path)).with_environment(environ)

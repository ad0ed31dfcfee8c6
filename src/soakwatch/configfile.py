"""Parse at the border: read a YAML file into typed values, rejecting unknown keys and naming
the key path and the file in every error. Behind this module no code sees a raw dict.

Usage (inside a ``from_section`` classmethod of a frozen dataclass)::

    section = Section.load(path)            # or Section(data, source="env", path="")
    interval = section.duration("interval_seconds", default=15.0, minimum=0.1)
    services = [Service.from_section(s) for s in section.sections("services")]
    section.finish()                        # raises on any key that was not read
"""

from __future__ import annotations

import enum
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final, Literal, TypeVar, overload

from soakwatch.durations import parse_duration, parse_rate
from soakwatch.errors import ConfigError

__all__ = [
    "MISSING",
    "Missing",
    "Section",
    "check_one_credential",
    "env_override",
    "redact_url",
    "redact_urls_in",
]

T = TypeVar("T")
D = TypeVar("D")
# What each accessor accepts as a default: a value of its own type, or None. A default of
# another type would come back unparsed (a duration default of "30s" stays a string).
StrDefault = TypeVar("StrDefault", bound="str | None")
BoolDefault = TypeVar("BoolDefault", bound="bool | None")
FloatDefault = TypeVar("FloatDefault", bound="float | None")
StrsDefault = TypeVar("StrsDefault", bound="tuple[str, ...] | None")
# The choices of a string: given as a tuple of literals, the value has that literal type.
Choice = TypeVar("Choice", bound=str)


class Missing(enum.Enum):
    """The type of ``MISSING``: an enum of one member, so overloads can tell "no default"
    (the key is required and the accessor returns its own type) from a default value."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = Missing.MISSING


_SECRET_QUERY_KEYS = frozenset({"password", "passwd", "pwd", "token", "secret"})


def redact_url(url: str) -> str:
    """``url`` with any password (userinfo, or a ``password=`` query parameter as libpq DSNs
    allow) replaced by ``***``, for labels, logs and error messages."""
    # urllib.parse (with ipaddress, 0.5 MB) imported here: a sidecar config never needs it
    from urllib.parse import parse_qsl, urlencode, urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    # Split the netloc by hand: parts.port raises on a bad port, and the URL being reported
    # is often exactly such a bad one.
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    if at and colon:
        parts = parts._replace(netloc=f"{user}:***@{hostport}")
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if any(key.lower() in _SECRET_QUERY_KEYS for key, _ in pairs):
            redacted = [
                (key, "***" if key.lower() in _SECRET_QUERY_KEYS else value) for key, value in pairs
            ]
            parts = parts._replace(query=urlencode(redacted, safe="*"))
    return parts.geturl()


# Anything that looks like a URL, or like ``user:password@host`` without a scheme, in a message.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]*")
_USERINFO_IN_TEXT = re.compile(r"(?<![^\s'\"])([^\s'\":/@]*):[^\s'\"@/]+@")


def redact_urls_in(text: str) -> str:
    """``text`` with every URL in it through :func:`redact_url`, and any other
    ``user:password@`` shown as ``user:***@``."""
    if "@" not in text and "=" not in text:
        return text
    text = _URL_IN_TEXT.sub(lambda found: redact_url(found.group(0)), text)
    return _USERINFO_IN_TEXT.sub(lambda found: f"{found.group(1)}:***@", text)


# How alike (difflib's ratio) an unread key must be to a missing required key to be called its
# typo: "treshold"/"threshold" is 0.94, "timout"/"timeout" 0.92; two real keys are rarely this
# close ("val"/"value" is 0.75 and stays "required key is missing").
_TYPO_CUTOFF = 0.8
# A number as YAML 1.2 spells it, as a string: YAML 1.1 (PyYAML) reads "1e308", "1E3" or
# "1.0e3" (an exponent without a dot or sign) as text.
_NUMBER_TEXT = re.compile(
    r"[-+]?(?:(?:[0-9][0-9_]*)?\.?[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*\.)\Z"
    r"|[-+]?\.(?:inf|Inf|INF)\Z"
)


def _number_from_text(value: object) -> object:
    """``value`` as a float when it is a string spelling a number (``"1e308"``), else as is."""
    if isinstance(value, str) and _NUMBER_TEXT.match(value.strip()):
        return float(value.strip().replace("_", "").lower().replace(".inf", "inf"))
    return value


def _close_matches(key: str, candidates: list[str], cutoff: float = 0.6) -> list[str]:
    """The candidate most like ``key`` (difflib, imported here: only an error needs it)."""
    import difflib

    return difflib.get_close_matches(key, candidates, n=1, cutoff=cutoff)


class Section:
    """One mapping of a config file, with the path that leads to it and the file it came from."""

    def __init__(self, data: Any, *, source: str, path: str = "") -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"expected a mapping, got {type(data).__name__}", source=source, key=path or None
            )
        for key in data:
            if not isinstance(key, str):
                raise ConfigError(
                    f"keys must be strings, got {key!r}", source=source, key=path or None
                )
        self._data: Mapping[str, Any] = data
        self.source = source
        self.path = path
        self._seen: set[str] = set()
        self._asked: set[str] = set()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Section:
        """Read a YAML file. A missing file or bad YAML is a ConfigError naming the file."""
        source = str(path)
        try:
            with open(path, encoding="utf-8") as handle:  # not pathlib: 0.4 MB in the sidecar
                text = handle.read()
        except OSError as exc:
            raise ConfigError(f"cannot read config file: {exc.strerror}", source=source) from None
        except UnicodeDecodeError as exc:
            line = exc.object.count(b"\n", 0, exc.start) + 1
            raise ConfigError(
                f"not UTF-8 text at line {line} (byte 0x{exc.object[exc.start]:02x})",
                source=source,
            ) from None
        from soakwatch.yamlfiles import load_yaml  # only for a file: yaml is 0.9 MB of RSS

        data = load_yaml(text, source)
        return cls(data, source=source)

    # -- bookkeeping -------------------------------------------------------------------------
    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> ConfigError:
        """A ConfigError naming the file and key path. A URL the message quotes is shown
        without its password: a value may be a URL with credentials under a key that
        expected something else (``listen: https://u:pw@host``)."""
        return ConfigError(redact_urls_in(message), source=self.source, key=self.key_path(key))

    def __contains__(self, key: str) -> bool:
        self._asked.add(key)  # a key the reader knows, though it may be absent
        return key in self._data

    def keys(self) -> list[str]:
        return list(self._data)

    def finish(self) -> None:
        """Raise on the first key that no accessor read: a typo must never be ignored."""
        for key in self._data:
            if key not in self._seen:
                # the suggestion: a key the reader asked for and the file does not give
                known = sorted((self._seen | self._asked) - set(self._data))
                raise self.unknown_key(key, _close_matches(key, known))

    def unknown_key(self, key: str, close: list[str] | tuple[str, ...] = ()) -> ConfigError:
        """The error of an unknown ``key``, suggesting the first of ``close`` (known keys that
        look like it) when there is one."""
        if not close:
            return self.error(key, "unknown key")
        return self.error(key, f"unknown key {key!r} (did you mean {close[0]!r}?)")

    def _get(self, key: str, default: object) -> Any:
        self._seen.add(key)
        if key in self._data and self._data[key] is not None:
            return self._data[key]
        if default is MISSING:
            # A required key is missing, and a key not read yet looks just like it: that key is
            # the typo, and saying so beats "required key is missing" (finish() would say it
            # next, but never runs). Only close look-alikes: the others may be read later.
            unread = [k for k in self._data if k not in self._seen]
            typo = _close_matches(key, unread, cutoff=_TYPO_CUTOFF)
            if typo:
                raise self.unknown_key(typo[0], [key])
            raise self.error(key, "required key is missing")
        return default

    # -- typed accessors ---------------------------------------------------------------------
    # Each accessor has two overloads: without a default the key is required and the value has
    # the accessor's type; with a default the value is that type or the default, unchanged.
    def raw(self, key: str, default: Any = MISSING) -> Any:
        return self._get(key, default)

    @overload
    def string(self, key: str, default: Missing = MISSING) -> str: ...
    @overload
    def string(
        self, key: str, default: Missing = MISSING, *, choices: tuple[Choice, ...]
    ) -> Choice: ...
    @overload
    def string(self, key: str, default: StrDefault | Missing) -> str | StrDefault: ...
    @overload
    def string(
        self, key: str, default: StrDefault | Missing, *, choices: tuple[Choice, ...]
    ) -> Choice | StrDefault: ...
    def string(self, key: str, default: object = MISSING, *, choices: tuple[str, ...] = ()) -> Any:
        value = self._get(key, default)
        if value is default and default is not MISSING:
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {type(value).__name__}")
        if choices and value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    @overload
    def boolean(self, key: str, default: Missing = MISSING) -> bool: ...
    @overload
    def boolean(self, key: str, default: BoolDefault | Missing) -> bool | BoolDefault: ...
    def boolean(self, key: str, default: object = MISSING) -> Any:
        value = self._get(key, default)
        if not isinstance(value, bool) and value is not default:
            raise self.error(key, f"expected true or false, got {value!r}")
        return value

    @overload
    def number(
        self,
        key: str,
        default: Missing = MISSING,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        exclusive_minimum: float | None = None,
        integer: Literal[True],
    ) -> int: ...
    @overload
    def number(
        self,
        key: str,
        default: Missing = MISSING,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        exclusive_minimum: float | None = None,
        integer: Literal[False] = False,
    ) -> float: ...
    @overload
    def number(
        self,
        key: str,
        default: FloatDefault | Missing,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        exclusive_minimum: float | None = None,
        integer: Literal[True],
    ) -> int | FloatDefault: ...
    @overload
    def number(
        self,
        key: str,
        default: FloatDefault | Missing,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        exclusive_minimum: float | None = None,
        integer: Literal[False] = False,
    ) -> float | FloatDefault: ...
    def number(
        self,
        key: str,
        default: object = MISSING,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        exclusive_minimum: float | None = None,
        integer: bool = False,
    ) -> Any:
        """A number within the given bounds; an ``int`` with ``integer=True``, else a float."""
        value = self._get(key, default)
        if value is default and default is not MISSING:
            return value
        value = _number_from_text(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"expected a number, got {_shown(value)}")
        try:
            number = float(value)
        except OverflowError:  # an int beyond a float's range
            sign = "-" if value < 0 else ""
            raise self.error(key, f"{sign}{str(abs(value))[:12]}... is out of range") from None
        if integer and not (math.isfinite(number) and int(value) == value):
            raise self.error(key, f"expected a whole number, got {_shown(value)}")
        _check_range(self, key, number, minimum, maximum, exclusive_minimum)
        return int(value) if integer else number

    @overload
    def duration(
        self,
        key: str,
        default: Missing = MISSING,
        *,
        minimum: float | None = None,
        exclusive_minimum: float | None = 0.0,
        maximum: float | None = None,
    ) -> float: ...
    @overload
    def duration(
        self,
        key: str,
        default: FloatDefault | Missing,
        *,
        minimum: float | None = None,
        exclusive_minimum: float | None = 0.0,
        maximum: float | None = None,
    ) -> float | FloatDefault: ...
    def duration(
        self,
        key: str,
        default: object = MISSING,
        *,
        minimum: float | None = None,
        exclusive_minimum: float | None = 0.0,
        maximum: float | None = None,
    ) -> Any:
        """Seconds, from a number or a string like "30s", "2h". Positive unless said otherwise."""
        value = self._get(key, default)
        if value is default and default is not MISSING:
            return value
        try:
            seconds = parse_duration(_number_from_text(value))  # type: ignore[arg-type]  # parse_duration rejects other types with a reason
        except ValueError as exc:
            raise self.error(key, str(exc)) from None
        except OverflowError:  # an int beyond a float's range
            raise self.error(key, "not a finite duration") from None
        _check_range(self, key, seconds, minimum, maximum, exclusive_minimum)
        return seconds

    @overload
    def rate(self, key: str, default: Missing = MISSING) -> float: ...
    @overload
    def rate(self, key: str, default: FloatDefault | Missing) -> float | FloatDefault: ...
    def rate(self, key: str, default: object = MISSING) -> Any:
        """Events per second from "100/s", "5/min" or a number; must be > 0."""
        value = self._get(key, default)
        if value is default and default is not MISSING:
            return value
        try:
            per_second = parse_rate(_number_from_text(value))  # type: ignore[arg-type]  # parse_rate rejects other types with a reason
        except ValueError as exc:
            raise self.error(key, str(exc)) from None
        except OverflowError:  # an int beyond a float's range
            raise self.error(key, "not a finite rate") from None
        if not per_second > 0:
            raise self.error(key, f"must be greater than 0, got {value!r}")
        return per_second

    @overload
    def url(
        self, key: str, default: Missing = MISSING, *, schemes: tuple[str, ...] = ()
    ) -> str: ...
    @overload
    def url(
        self, key: str, default: StrDefault | Missing, *, schemes: tuple[str, ...] = ()
    ) -> str | StrDefault: ...
    def url(self, key: str, default: object = MISSING, *, schemes: tuple[str, ...] = ()) -> Any:
        """A URL with a scheme and a host. Errors never echo a password back."""
        value = self._get(key, default)
        if value is default and default is not MISSING:
            return value
        if not isinstance(value, str):
            raise self.error(key, f"expected a URL string, got {type(value).__name__}")
        check_url(value, schemes=schemes, fail=lambda msg: self.error(key, msg))
        return value

    @overload
    def string_list(self, key: str, default: Missing = MISSING) -> tuple[str, ...]: ...
    @overload
    def string_list(
        self, key: str, default: StrsDefault | Missing
    ) -> tuple[str, ...] | StrsDefault: ...
    def string_list(self, key: str, default: object = MISSING) -> Any:
        """A list of strings (or one string) as a tuple."""
        value = self._get(key, default)
        if value is default and default is not MISSING:
            return value
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "expected a list of strings")
        return tuple(value)

    def section(self, key: str, *, required: bool = False) -> Section:
        value = self._get(key, MISSING if required else None)
        return Section(value, source=self.source, path=self.key_path(key))

    def sections(self, key: str, *, required: bool = False) -> Iterator[Section]:
        """Each item of a list of mappings, as a Section with an indexed path (``services[2]``)."""
        value = self._get(key, MISSING if required else [])
        if not isinstance(value, list):
            raise self.error(key, f"expected a list, got {type(value).__name__}")
        for index, item in enumerate(value):
            yield Section(item, source=self.source, path=f"{self.key_path(key)}[{index}]")

    def named_sections(self, key: str) -> Iterator[tuple[str, Section]]:
        """Each entry of a mapping of mappings, keyed by name (``rules.memory_growth``)."""
        outer = self.section(key)
        for name in list(outer._data):
            outer._seen.add(name)
            yield name, Section(outer._data[name], source=self.source, path=outer.key_path(name))

    @overload
    def convert(self, key: str, parse: Callable[[Any], T], default: Missing = MISSING) -> T: ...
    @overload
    def convert(self, key: str, parse: Callable[[Any], T], default: D | Missing) -> T | D: ...
    def convert(self, key: str, parse: Callable[[Any], T], default: object = MISSING) -> Any:
        """Apply ``parse`` (which raises ValueError with a reason) to the value of ``key``."""
        value = self._get(key, default)
        if value is default and default is not MISSING:
            return value
        try:
            return parse(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None


def _shown(value: object) -> str:
    """A wrong value as an error shows it: short, so a pasted blob never fills the terminal."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _check_range(
    section: Section,
    key: str,
    value: float,
    minimum: float | None,
    maximum: float | None,
    exclusive_minimum: float | None,
) -> None:
    if value != value:
        raise section.error(key, "must be a number, got NaN")
    if minimum is not None and value < minimum:
        raise section.error(key, f"must be at least {minimum:g}, got {value:g}")
    if exclusive_minimum is not None and minimum is None and not value > exclusive_minimum:
        raise section.error(key, f"must be greater than {exclusive_minimum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise section.error(key, f"must be at most {maximum:g}, got {value:g}")


def check_url(
    value: str, *, schemes: tuple[str, ...] = (), fail: Callable[[str], Exception]
) -> None:
    """Raise ``fail(reason)`` unless ``value`` is a URL with a scheme and a host."""
    from urllib.parse import urlsplit  # see redact_url

    shown = redact_url(value)
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise fail(f"not a valid URL: {shown!r}") from None
    if not parts.scheme or not parts.hostname:
        raise fail(f"not a valid URL (needs scheme://host): {shown!r}")
    if schemes and parts.scheme not in schemes:
        raise fail(f"URL scheme must be one of {', '.join(schemes)}: {shown!r}")


def check_one_credential(
    section: Section, url_key: str, url: str, headers_key: str, header_names: Iterable[str]
) -> None:
    """Raise a ConfigError naming both keys when ``url`` carries credentials (``user:pass@``)
    and the headers under ``headers_key`` hold an ``Authorization`` header too: a request would
    carry two (HTTP clients refuse it, servers answer 400), so every one would fail at run time.
    The message names the keys only, never the URL or the header's value."""
    from urllib.parse import urlsplit  # see redact_url

    userinfo, at, _hostport = urlsplit(url).netloc.rpartition("@")
    if not (at and userinfo):
        return
    for name in header_names:
        if name.lower() == "authorization":
            raise section.error(
                url_key,
                f"credentials in the URL and {section.key_path(headers_key)}.{name} both given; "
                "use one",
            )


def env_override(
    name: str,
    parse: Callable[[str], T],
    default: T,
    environ: Mapping[str, str] | None = None,
) -> T:
    """The value of environment variable ``name`` through ``parse``, or ``default`` when unset.

    A bad value is a ConfigError that names the variable."""
    env = os.environ if environ is None else environ
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(str(exc), source="environment", key=name) from None

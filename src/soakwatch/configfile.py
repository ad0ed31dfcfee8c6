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
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, overload
from urllib.parse import parse_qsl, urlencode, urlsplit

import yaml

from soakwatch.durations import parse_duration, parse_rate
from soakwatch.errors import ConfigError

__all__ = ["MISSING", "Missing", "Section", "env_override", "redact_url"]

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


class _DuplicateKeyError(yaml.constructor.ConstructorError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (plain YAML keeps the last one
    silently, so a pasted duplicate would hide the first value). Merge keys (``<<``) may still
    be overridden, as YAML intends."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise _DuplicateKeyError(
                    problem=f"duplicate key {key_node.value!r}", problem_mark=key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


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

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Section:
        """Read a YAML file. A missing file or bad YAML is a ConfigError naming the file."""
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file: {exc.strerror}", source=source) from None
        except UnicodeDecodeError as exc:
            line = exc.object.count(b"\n", 0, exc.start) + 1
            raise ConfigError(
                f"not UTF-8 text at line {line} (byte 0x{exc.object[exc.start]:02x})",
                source=source,
            ) from None
        try:
            data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            # Only our own duplicate-key problem is echoed: YAML's other problems are generic.
            detail = f": {exc.problem}" if isinstance(exc, _DuplicateKeyError) else ""
            raise ConfigError(f"not valid YAML{where}{detail}", source=source) from None
        return cls(data, source=source)

    # -- bookkeeping -------------------------------------------------------------------------
    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, source=self.source, key=self.key_path(key))

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def keys(self) -> list[str]:
        return list(self._data)

    def finish(self) -> None:
        """Raise on the first key that no accessor read: a typo must never be ignored."""
        for key in self._data:
            if key not in self._seen:
                raise ConfigError("unknown key", source=self.source, key=self.key_path(key))

    def _get(self, key: str, default: object) -> Any:
        self._seen.add(key)
        if key in self._data and self._data[key] is not None:
            return self._data[key]
        if default is MISSING:
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
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"expected a number, got {value!r}")
        if integer and int(value) != value:
            raise self.error(key, f"expected a whole number, got {value!r}")
        _check_range(self, key, float(value), minimum, maximum, exclusive_minimum)
        return int(value) if integer else float(value)

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
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None
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
            per_second = parse_rate(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None
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

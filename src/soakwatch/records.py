"""Frozen value classes for the sidecar exporter's path, without the dataclasses module.

Why: ``import dataclasses`` loads inspect, ast, dis, tokenize and linecache, about 1.3 MB of
RSS in ``soak-exporter``, whose whole budget is the ~18 MB of Debian's
prometheus-process-exporter. A ``Record`` subclass names its fields in ``__slots__``, in the
order of its ``__init__`` (hence ``noqa: RUF023``), and sets them with ``_init``. It then
behaves as a frozen dataclass does: equal when the class and every field are, hashed by its
fields, a ``Name(field=value, ...)`` repr, ``dataclasses.FrozenInstanceError`` on assignment
(imported only then), copy and pickle by its fields, and ``replace(**changes)`` for
``dataclasses.replace``. Components off the sidecar path keep using dataclasses.
"""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = ["Record"]

_R = TypeVar("_R", bound="Record")


def _frozen(name: str) -> AttributeError:
    from dataclasses import FrozenInstanceError  # the error path only

    return FrozenInstanceError(f"cannot assign to field {name!r}")


class Record:
    """A frozen value made of the fields named in ``__slots__``."""

    __slots__: tuple[str, ...] = ()

    def _init(self, **values: Any) -> None:
        """Set the fields once, from ``__init__``."""
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def replace(self: _R, **changes: Any) -> _R:
        """A copy with ``changes`` applied (``dataclasses.replace``), through ``__init__`` so
        its checks run again."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return type(self)(**values)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Record)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__qualname__}({fields})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise _frozen(name)

    def __delattr__(self, name: str) -> None:
        raise _frozen(name)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self._values())

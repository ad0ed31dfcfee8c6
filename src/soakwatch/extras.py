"""Optional dependencies, by extra. ``pip install soakwatch`` keeps the exporter light; a
command that needs more says which extra in one line, before it starts any work:

    soak-analyze: needs the 'analyzer' extra (numpy is not installed): pip install
    'soakwatch[analyzer]'
"""

from __future__ import annotations

import importlib.util

from soakwatch.errors import SoakwatchError

__all__ = ["EXTRAS", "MissingExtraError", "require_extra"]

# extra -> the modules it brings that soakwatch imports
EXTRAS: dict[str, tuple[str, ...]] = {
    "analyzer": ("numpy", "matplotlib"),
    "http": ("aiohttp",),
    "redis": ("redis",),
    "postgres": ("psycopg",),
    "clickhouse": ("aiohttp",),  # the load driver speaks ClickHouse over HTTP
    "grafana": ("grafana_client",),
    "demo": ("asyncpg",),  # and the analyzer, http, redis and postgres extras
}


class MissingExtraError(SoakwatchError):
    """A feature needs an optional dependency that is not installed (exit 2)."""

    def __init__(self, extra: str, module: str) -> None:
        self.extra = extra
        self.module = module
        super().__init__(
            f"needs the {extra!r} extra ({module} is not installed): "
            f"pip install 'soakwatch[{extra}]'"
        )


def require_extra(extra: str, *modules: str) -> None:
    """Raise MissingExtraError when a module of ``extra`` (default: all it brings) is missing.
    Looks the modules up without importing them, so the check costs nothing."""
    for module in modules or EXTRAS[extra]:
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(extra, module)

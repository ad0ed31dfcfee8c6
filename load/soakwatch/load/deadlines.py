"""One deadline around an awaitable, on every supported Python (``asyncio.timeout`` is 3.11+)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["within"]

T = TypeVar("T")

if sys.version_info >= (3, 11):

    async def within(seconds: float, awaitable: Awaitable[T]) -> T:
        """``await awaitable``, raising TimeoutError after ``seconds``."""
        async with asyncio.timeout(seconds):
            return await awaitable

else:  # pragma: no cover - Python 3.10

    async def within(seconds: float, awaitable: Awaitable[T]) -> T:
        """``await awaitable``, raising TimeoutError after ``seconds``."""
        try:
            return await asyncio.wait_for(awaitable, seconds)
        except asyncio.TimeoutError:
            raise TimeoutError from None

"""Run soakwatch's benchmarks: ``python -m benchmarks [NAME ...]`` from the repository root.

Each benchmark is a module ``benchmarks/<name>.py`` with ``main(argv: list[str]) -> int``; it
prints its figures (ratios against a reference measured in the same run) and writes them to
``benchmarks/results/<name>.json``. With no NAME, all of them run in turn."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    available = sorted(
        m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_")
    )
    names = [a for a in argv if not a.startswith("-")] or available
    options = [a for a in argv if a.startswith("-")]
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available)}")
        return 2
    status = 0
    for name in names:
        print(f"== benchmark {name}", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        status |= module.main(options)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

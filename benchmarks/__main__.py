"""Run soakwatch's benchmarks: ``python -m benchmarks [NAME ...] [OPTIONS]`` from the repository
root.

Each benchmark is a module ``benchmarks/<name>.py`` with ``main(argv: list[str]) -> int``; it
prints its figures (ratios against a reference measured in the same run) and writes them to
``benchmarks/results/<name>.json``. With no NAME, all of them run in turn. The names come
first; everything from the first argument starting with ``-`` on goes to each benchmark
(``python -m benchmarks load_memory --seconds 30``; ``python -m benchmarks NAME --help``)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

USAGE = "usage: python -m benchmarks [NAME ...] [OPTIONS]"


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def _first_line(name: str) -> str:
    doc = importlib.import_module(f"benchmarks.{name}").__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def main(argv: list[str]) -> int:
    names_known = available()
    split = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, options = argv[:split], argv[split:]
    if not names and options and options[0] in ("-h", "--help"):
        print(USAGE)
        print("Runs each NAME (all when none is given); OPTIONS go to each of them.")
        print("Benchmarks (python -m benchmarks NAME --help for the options of one):")
        for name in names_known:
            print(f"  {name:<20} {_first_line(name)}")
        return 0
    unknown = [n for n in names if n not in names_known]
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(names_known)}\n"
            f"{USAGE}",
            file=sys.stderr,
        )
        return 2
    status = 0
    for name in names or names_known:
        print(f"== benchmark {name}", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        status |= module.main(options)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The README and the project's own docs state what is true of the repository: the layout table
lists exactly the top-level folders, every path they cite exists, and the profile table is the
one in ``soakwatch.profiles``."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

from soakwatch.profiles import PROFILES, Profile

REPO = Path(__file__).resolve().parents[1]
# The pages checked for paths that do not exist; add a page here once its paths are current.
PAGES = [
    "README.md",
    "CONTRIBUTING.md",
    "CHANGELOG.md",
    "docs/deploy.md",
    "docs/metrics.md",
    "docs/profiles.md",
]


def ignored_folder_patterns() -> list[str]:
    """The .gitignore patterns for folders (``build/``, ``soak-runs/``): made by running things,
    not part of the repository."""
    lines = (REPO / ".gitignore").read_text(encoding="utf-8").splitlines()
    return [line.strip().strip("/") for line in lines if line.strip().endswith("/")]


def top_level_folders() -> set[str]:
    """What ``ls`` shows of the repository's folders: not hidden, not ignored."""
    ignored = ignored_folder_patterns()
    return {
        path.name
        for path in REPO.iterdir()
        if path.is_dir()
        and not path.name.startswith(".")
        and not any(fnmatch.fnmatch(path.name, pattern) for pattern in ignored)
    }


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def table_rows(text: str) -> list[list[str]]:
    """The cells of every row of the first Markdown table in ``text``, header and rule left out."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return [row for row in rows[2:]]


def test_the_readme_layout_table_lists_exactly_the_top_level_folders() -> None:
    rows = table_rows(section((REPO / "README.md").read_text(encoding="utf-8"), "Layout"))
    listed = [row[0].strip("`").rstrip("/") for row in rows]
    assert len(listed) == len(set(listed)), f"a folder is listed twice: {listed}"
    assert set(listed) == top_level_folders()


def test_the_readme_layout_table_says_where_the_orchestration_lives() -> None:
    rows = table_rows(section((REPO / "README.md").read_text(encoding="utf-8"), "Layout"))
    (run,) = [row for row in rows if row[0] == "`run/`"]
    for name in (
        "soakwatch.run",
        "soakwatch.pytest_plugin",
        "soakwatch.suite",
        "soakwatch.commands",
    ):
        assert name in run[2]


def cited_paths(text: str) -> list[str]:
    """Paths into the repository's folders that ``text`` mentions (``rules/soakwatch/...``)."""
    folders = "|".join(sorted(top_level_folders()))
    found = re.findall(rf"(?<![\w./<>-])((?:{folders})/[\w./*…-]*)", text)
    return sorted({path.rstrip(".…").removesuffix("..") for path in found})


def made_by_running_things(path: str) -> bool:
    """True for a path inside an ignored folder (``benchmarks/results/NAME.json``)."""
    parts = Path(path).parts
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    prefixes += list(parts)  # a pattern without a slash matches a folder at any depth
    return any(
        fnmatch.fnmatch(p, pattern) for p in prefixes for pattern in ignored_folder_patterns()
    )


def exists(path: str) -> bool:
    if "*" in path:
        return any(REPO.glob(path))
    return (REPO / path).exists()


@pytest.mark.parametrize("page", PAGES)
def test_every_path_a_page_cites_exists(page: str) -> None:
    text = (REPO / page).read_text(encoding="utf-8")
    paths = [path for path in cited_paths(text) if not made_by_running_things(path)]
    assert paths, f"{page} cites no path: the check would pass on anything"
    missing = [path for path in paths if not exists(path)]
    assert not missing, f"{page} cites paths that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES)
def test_every_local_link_of_a_page_exists(page: str) -> None:
    text = (REPO / page).read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)\)", text)
    local = [t for t in targets if "://" not in t]
    missing = [t for t in local if not ((REPO / page).parent / t).exists()]
    assert not missing, f"{page} links to files that do not exist: {missing}"


def test_no_page_cites_design_md_which_is_not_in_the_repository() -> None:
    assert not (REPO / "DESIGN.md").exists()
    for page in PAGES:
        assert "DESIGN.md" not in (REPO / page).read_text(encoding="utf-8"), page


UNIT_SECONDS = {"h": 3600, "min": 60, "s": 1}


def seconds_of(cell: str) -> float:
    """``2 h``, ``3 min``, ``30 s`` in seconds."""
    number, unit = cell.split()
    return float(number) * UNIT_SECONDS[unit]


def documented_figures(row: list[str]) -> tuple[float, ...]:
    duration, sampling, connections, spawns, db_operations = row
    return (
        seconds_of(duration),
        seconds_of(sampling),
        float(connections),
        float(spawns),
        float(db_operations),
    )


def profile_figures(profile: Profile) -> tuple[float, ...]:
    return (
        profile.duration_seconds,
        profile.sampling_interval_seconds,
        float(profile.max_concurrent_connections),
        profile.session_spawns_per_minute,
        profile.db_operations_per_minute,
    )


def test_the_profile_table_of_the_docs_is_the_one_in_soakwatch_profiles() -> None:
    rows = table_rows((REPO / "docs" / "profiles.md").read_text(encoding="utf-8"))
    documented = {}
    for row in rows:
        name = re.match(r"`(\w+)`", row[0])
        if name and name.group(1) in PROFILES:
            documented[name.group(1)] = documented_figures(row[1:6])
    assert documented == {name: profile_figures(p) for name, p in PROFILES.items()}


def test_the_profile_docs_name_every_environment_override() -> None:
    from soakwatch import profiles

    docstring = profiles.resolve_profile.__doc__ or ""
    variables = set(re.findall(r"SOAK_[A-Z_]+", docstring))
    assert len(variables) == 5
    documented = set(
        re.findall(r"SOAK_[A-Z_]+", (REPO / "docs" / "profiles.md").read_text(encoding="utf-8"))
    )
    assert variables <= documented

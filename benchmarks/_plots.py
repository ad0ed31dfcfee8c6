"""Plots of benchmark results (matplotlib, from the analyzer extra; Agg backend, PNG files).

A helper module, not a benchmark: its name starts with ``_`` so ``python -m benchmarks`` does
not run it."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks._traces import FAMILIES

WINDOWS = (2.0, 12.0, 48.0)


def _pooled(cells: list[dict[str, Any]], key: str) -> float:
    n = sum(c["trials"] for c in cells)
    return sum(c.get(key, {}).get("fail", 0) for c in cells) / n if n else float("nan")


def accuracy_plot(
    cells: dict[str, dict[str, Any]], path: Path, commit: str | None, trials: int
) -> Path:
    """False-fail rate per leak-free family and recall at 2x and at >= 10x per leak family, one
    column per run length (2 h, 12 h, 48 h): the analyzer beside deriv() (and the oracle for
    recall), with the targets drawn as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clean: dict[float, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    leak2: dict[float, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    leak10: dict[float, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    latency: dict[float, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for c in cells.values():
        if c["hours"] not in WINDOWS:
            continue
        if c["family"].startswith("latency_"):
            latency[c["hours"]][c["family"]].append(c)
        elif not c["leak_factor"]:
            clean[c["hours"]][c["family"]].append(c)
        elif c["leak_factor"] == 2:
            leak2[c["hours"]][c["family"]].append(c)
        elif c["leak_factor"] >= 10:
            leak10[c["hours"]][c["family"]].append(c)
    exempt = {n for n in FAMILIES if not FAMILIES[n].recall_targets}
    rows = [
        ("false fails, leak-free", clean, 0.01, False),
        ("recall at 2x", leak2, 0.95, True),
        ("recall at >= 10x", leak10, 0.99, True),
        ("latency: fails", latency, None, False),
    ]
    names_per_row = [
        sorted({f for by_window in data.values() for f in by_window}) for _, data, _, _ in rows
    ]
    heights = [max(len(n), 1) for n in names_per_row]
    fig, axes = plt.subplots(
        len(rows),
        len(WINDOWS),
        figsize=(15, 0.28 * sum(heights) + 3),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for r, ((title, data, target, recall), names) in enumerate(
        zip(rows, names_per_row, strict=True)
    ):
        for w, hours in enumerate(WINDOWS):
            ax = axes[r][w]
            present = data.get(hours, {})
            y = list(range(len(names)))
            ours = [_pooled(present.get(n, []), "analyzer") for n in names]
            theirs = [_pooled(present.get(n, []), "reference") for n in names]
            ax.barh([i - 0.2 for i in y], ours, height=0.4, label="analyzer", color="tab:blue")
            ax.barh([i + 0.2 for i in y], theirs, height=0.4, label="reference", color="tab:gray")
            if recall:
                best = [_pooled(present.get(n, []), "oracle") for n in names]
                ax.plot(best, y, "k|", markersize=10, label="oracle")
            if target is not None:
                ax.axvline(target, color="tab:red", linestyle="--", linewidth=1)
            for edge in y[:-1]:
                ax.axhline(edge + 0.5, color="0.85", linewidth=0.6)
            ax.set_xlim(0, 1.02)
            ax.set_yticks(y)
            shown = [n + ("*" if recall and n in exempt else "") for n in names]
            ax.set_yticklabels(shown if w == 0 else [""] * len(names), fontsize=8)
            ax.invert_yaxis()
            ax.grid(axis="x", alpha=0.3)
            ax.set_title(f"{title} — {hours:g} h", fontsize=9)
            if r == 1 and w == 0:
                handles, labels = ax.get_legend_handles_labels()
                fig.legend(handles, labels, fontsize=8, loc="upper right", ncol=3)
    fig.suptitle(
        f"analyzer accuracy at commit {commit or '?'} ({trials} traces per cell); reference: "
        "deriv() over the run (memory), one window against one (latency); red: target; "
        "* no recall target",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.975))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path

from __future__ import annotations

from soakwatch.analyzer.html import _title
from soakwatch.analyzer.report import Result


def _memory_result(figure: float | None) -> Result:
    return Result(
        rule="memory_growth",
        kind="slope",
        subject={"service": "api"},
        status="fail" if figure else "inconclusive",
        figure=figure,
        unit="MB/h",
        threshold=2.0,
        comparison="<",
        reason="",
    )


def test_a_plot_title_states_the_judged_figure_against_its_threshold() -> None:
    assert _title(_memory_result(926.6)) == (
        "memory_growth service=api: fail  (927 MB/h, passes when < 2)"
    )


def test_a_plot_title_without_a_figure_states_only_the_status() -> None:
    assert _title(_memory_result(None)) == "memory_growth service=api: inconclusive"

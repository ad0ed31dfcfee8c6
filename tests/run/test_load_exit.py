"""How run.json names the end of the load driver."""

from __future__ import annotations

import signal

from soakwatch.exitcodes import EXIT_THRESHOLD
from soakwatch.run.execute import load_exit_description


def test_a_breached_load_threshold_is_named_as_such_not_as_a_crash() -> None:
    how = load_exit_description(EXIT_THRESHOLD)
    assert how == {
        "exit": 99,
        "signal": None,
        "how": "stopped on a breached load threshold (exit 99)",
    }


def test_other_ends_keep_their_plain_description() -> None:
    assert load_exit_description(1)["how"] == "exited with code 1"
    killed = load_exit_description(-signal.SIGKILL)
    assert (killed["signal"], killed["how"]) == ("SIGKILL", "was killed by SIGKILL")

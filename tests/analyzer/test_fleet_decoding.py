"""The matrix decoder's integer path (answers holding only whole numbers, read as int64 and
converted in one pass) gives the doubles ``float()`` gives each text, as the general path does."""

from __future__ import annotations

import json

import numpy as np
import pytest

from soakwatch.analyzer.sources import decode_answer

# whole numbers around every edge the int64 path meets: exact doubles, the first integers a
# double cannot hold (rounded to even), int64's ends, beyond int64 (the general path)
EDGES = [
    "0",
    "-0",
    "7",
    "-12",
    "200821618",
    "9007199254740992",
    "9007199254740993",
    "9007199254740995",
    "-9007199254740993",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "18446744073709551617",
    "123456789012345678901234567890",
]


def answer(values: list[list[str]]) -> bytes:
    """A Prometheus matrix answer, one result per list of values, times every 15 s."""
    result = [
        {
            "metric": {"__name__": "m", "service": f"s{index}"},
            "values": [[1699920000 + 15 * k, text] for k, text in enumerate(texts)],
        }
        for index, texts in enumerate(values)
    ]
    body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
    return json.dumps(body, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "texts",
    [
        EDGES,
        [text for text in EDGES if len(text.lstrip("-")) < 19],  # int64 throughout
        ["1", "2.5", "3"],  # a fraction: the general path
        ["1", "1e3", "4E2"],  # exponents: the general path
        ["1", "NaN", "+Inf", "-Inf"],
    ],
)
def test_integer_answers_decode_to_the_doubles_float_gives_each_text(texts: list[str]) -> None:
    _body, samples = decode_answer(answer([texts, texts[::-1]]))
    assert samples is not None
    for (t, v), expected in zip(samples, [texts, texts[::-1]], strict=True):
        want = np.array([float(text) for text in expected])
        assert v.dtype == np.float64 and t.dtype == np.float64
        np.testing.assert_array_equal(v, want)
        # the same bits, not only equal values (-0 aside, which both paths read as 0)
        same = (v.view(np.int64) == want.view(np.int64)) | (want == 0)
        assert same.all(), [x for x, ok in zip(expected, same, strict=True) if not ok]
        np.testing.assert_array_equal(t, 1699920000.0 + 15.0 * np.arange(len(expected)))


def test_a_double_rounds_an_integer_it_cannot_hold_as_float_does() -> None:
    # 2**53 + 1 lies halfway between two doubles: both paths round to the even one, 2**53
    _body, samples = decode_answer(answer([["9007199254740993", "9007199254740995"]]))
    assert samples is not None
    assert samples[0][1].tolist() == [9007199254740992.0, 9007199254740996.0]

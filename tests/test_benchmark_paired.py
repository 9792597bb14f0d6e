"""The round-by-round ratio of two contenders' times, and its interval (``benchmarks/paired.py``)."""

from __future__ import annotations

import math
import random

import pytest

from benchmarks.paired import CONFIDENCE, LEAST_ROUNDS, paired_ratio


def test_a_constant_ratio_survives_a_machine_that_doubles_its_times() -> None:
    # The machine's moment (1x or 2.5x) is shared by the two runs of a round: the ratio of the medians
    # would mix moments, the round-by-round ratio sees only the contenders.
    moments = [1.0, 2.5, 1.0, 2.5, 2.5, 1.0, 2.5]
    paired = paired_ratio([1.1 * m for m in moments], moments)
    assert paired is not None
    assert paired.rounds == len(moments)
    assert paired.ratio == pytest.approx(1.1)
    assert paired.low == pytest.approx(1.1) and paired.high == pytest.approx(1.1)


def test_noisy_rounds_give_an_interval_around_their_geometric_mean() -> None:
    draw = random.Random(7)
    theirs = [draw.uniform(0.08, 0.2) for _ in range(30)]
    mine = [t * draw.uniform(0.9, 1.12) for t in theirs]
    paired = paired_ratio(mine, theirs)
    assert paired is not None
    geometric = math.exp(sum(math.log(a / b) for a, b in zip(mine, theirs, strict=True)) / len(mine))
    assert paired.ratio == pytest.approx(geometric)
    assert 0.9 < paired.low < paired.ratio < paired.high < 1.12
    assert paired.high - paired.low < 0.05  # 30 rounds pin the mean of ratios spread over 0.22 well


def test_an_interval_that_spans_one_says_a_tie() -> None:
    theirs = [0.1] * 10
    mine = [0.1 * r for r in (0.92, 1.08, 0.95, 1.06, 1.0, 0.97, 1.04, 0.93, 1.07, 1.0)]
    paired = paired_ratio(mine, theirs)
    assert paired is not None
    assert paired.low < 1.0 < paired.high
    assert paired.shown() == f"round by round {paired.ratio:.2f}x, {CONFIDENCE:.0%} {paired.low:.2f}-{paired.high:.2f}x"


def test_the_same_runs_give_the_same_interval() -> None:
    mine, theirs = [0.11, 0.13, 0.1, 0.12, 0.14, 0.1], [0.1, 0.12, 0.11, 0.1, 0.13, 0.12]
    assert paired_ratio(mine, theirs) == paired_ratio(list(mine), list(theirs))


@pytest.mark.parametrize(
    ("mine", "theirs"),
    [
        ([0.1] * (LEAST_ROUNDS - 1), [0.1] * (LEAST_ROUNDS - 1)),  # too few rounds to bootstrap
        ([0.1] * LEAST_ROUNDS, [0.1] * (LEAST_ROUNDS + 1)),  # a capped contender: rounds do not pair up
        ([0.1] * (LEAST_ROUNDS - 1) + [0.0], [0.1] * LEAST_ROUNDS),  # a time of zero has no ratio
    ],
)
def test_no_interval_where_rounds_do_not_pair(mine: list[float], theirs: list[float]) -> None:
    assert paired_ratio(mine, theirs) is None

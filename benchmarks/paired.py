"""Two contenders' times compared round by round, with how sure one run can be of the ratio.

The runs of one round follow each other within seconds (``run._take_turns``),
so a ratio of two runs of the same round cancels most of what the machine was
doing at the time; the ratio of two medians does not. On a shared machine a
workload's runs may range over 2x while a change is worth 5%: the interval
says whether a run can tell the two contenders apart at all::

    round    1     2     3    ...   n
    ours    0.12  0.10  0.15       0.11
    peer    0.11  0.10  0.13       0.12      ratios, then their geometric mean,
    ratio   1.09  1.00  1.15       0.92  ->  and a bootstrap interval for it

The interval is a percentile bootstrap of the mean log ratio, drawn from a
fixed seed, so the same runs always give the same interval.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

LEAST_ROUNDS = 5
"""Fewer rounds than this give no interval: a bootstrap of three ratios says little."""

CONFIDENCE = 0.90
"""The interval's share of the bootstrap means (from the 5th to the 95th percentile)."""

RESAMPLES = 2000
"""Bootstrap resamples: enough that the interval's ends move by well under 1% between seeds."""

SEED = 20261202


@dataclass(frozen=True)
class PairedRatio:
    """The geometric mean of the round-by-round ratios, and the interval around it."""

    rounds: int
    ratio: float
    low: float
    high: float

    def shown(self) -> str:
        return f"round by round {self.ratio:.2f}x, {CONFIDENCE:.0%} {self.low:.2f}-{self.high:.2f}x"


def paired_ratio(mine: Sequence[float], theirs: Sequence[float]) -> PairedRatio | None:
    """``mine[i] / theirs[i]`` over the rounds both ran, summed up; None with too few rounds, or a time not above 0.

    Only equal counts pair up: a contender capped at fewer runs (a slow peer
    timed once) ran in other rounds than the other one's, and pairing them
    by position would compare runs of different moments.
    """
    if len(mine) != len(theirs) or len(mine) < LEAST_ROUNDS or min(*mine, *theirs) <= 0:
        return None
    logs = [math.log(a / b) for a, b in zip(mine, theirs, strict=True)]
    draw = random.Random(SEED)
    means = sorted(statistics.fmean(draw.choices(logs, k=len(logs))) for _ in range(RESAMPLES))
    tail = (1 - CONFIDENCE) / 2
    low = means[int(tail * (RESAMPLES - 1))]
    high = means[int((1 - tail) * (RESAMPLES - 1))]
    return PairedRatio(len(logs), math.exp(statistics.fmean(logs)), math.exp(low), math.exp(high))

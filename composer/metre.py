"""Metres that change: where a piece's time signatures apply and where its bars start.

A piece's metre is a list of changes ``[(quarter, "n/d"), ...]``: sorted by position, the first
at 0, no change repeating the metre before it (``metre_changes`` makes one from what a reader
finds). Bars run from each change in its metre; a bar that a change interrupts ends there,
shorter, as a notation program would write it. Positions are in quarter notes, as note times are.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

Change = tuple[float, str]
_EPS = 1e-9


def bar_quarters(time_signature: str) -> float:
    numerator, denominator = (int(x) for x in time_signature.split("/"))
    return numerator * 4.0 / denominator


def metre_changes(signatures: Iterable[tuple[float, str]], default: str = "4/4") -> list[Change]:
    """The changes of a piece from the (position, metre) pairs a reader found (in any order,
    one per track or part): the first metre holds from the start (what ``Piece.time_signature``
    has always said), a metre equal to the one before is no change, and of several new metres
    at one position the first listed wins (as it did for ``Piece.time_signature``)."""
    found = sorted(((float(at), signature) for at, signature in signatures), key=lambda c: c[0])
    if not found:
        return [(0.0, default)]
    first = found[0][0]
    changes: list[Change] = []
    for at, signature in found:
        at = 0.0 if at <= first else at
        if changes and changes[-1][0] == at:
            continue
        if not changes or changes[-1][1] != signature:
            changes.append((at, signature))
    return changes


def bars(changes: Sequence[Change], end: float) -> list[tuple[float, float, str]]:
    """(start, length, metre) of every bar from 0 until ``end`` is covered (at least one)."""
    result: list[tuple[float, float, str]] = []
    for k, (at, signature) in enumerate(changes):
        stop = changes[k + 1][0] if k + 1 < len(changes) else math.inf
        bar, start = bar_quarters(signature), at
        while start < min(stop, end) - _EPS or not result:
            result.append((start, min(bar, stop - start), signature))
            start += bar
        if min(start, stop) >= end - _EPS:  # covered (start passes stop when a change cuts a bar)
            break
    return result


def bars_end(changes: Sequence[Change], count: float) -> float:
    """Where the first ``count`` bars end, in quarters (a fraction of a bar: that share of it)."""
    start, left = 0.0, count
    for k, (at, signature) in enumerate(changes):
        stop = changes[k + 1][0] if k + 1 < len(changes) else math.inf
        bar = bar_quarters(signature)
        while start < stop - _EPS:
            length = min(bar, stop - start)
            if left <= 1 + _EPS:
                return start + left * length
            start, left = start + length, left - 1
    return start


def metre_at(changes: Sequence[Change], quarter: float) -> str:
    """The metre in force at ``quarter`` (at a change: the new one)."""
    current = changes[0][1]
    for at, signature in changes:
        if at <= quarter + _EPS:
            current = signature
    return current


def changes_before(changes: Sequence[Change], end: float) -> list[Change]:
    """The changes that take effect before ``end`` (the first always)."""
    return [c for k, c in enumerate(changes) if k == 0 or c[0] < end - _EPS]

"""The measures' registry: each measure's intervals depend on its own name, never its place."""

from __future__ import annotations

import numpy as np

import composer.metrics
from composer.compare import compare_measures
from composer.metrics import MEASURES, MeasureInfo


def pieces(rng: np.random.Generator, count: int, keys) -> list[dict[str, float]]:
    return [{key: float(rng.normal()) for key in keys} for _ in range(count)]


def test_inserting_a_measure_changes_no_other_interval_or_verdict(monkeypatch):
    keys = ["new_measure", *MEASURES]
    rng = np.random.default_rng(3)
    rows = {"epoch-0100": pieces(rng, 12, keys), "epoch-0150": pieces(rng, 12, keys)}
    reference = pieces(rng, 12, keys)
    before = {m.key: m for m in compare_measures(rows, reference, list(rows), seed=5)}
    grown = {"new_measure": MeasureInfo("new", "a unit", "something"), **MEASURES}
    monkeypatch.setattr(composer.metrics, "MEASURES", grown)
    after = {m.key: m for m in compare_measures(rows, reference, list(rows), seed=5)}
    assert list(after) == keys
    for key, measure in before.items():
        assert after[key].values == measure.values and after[key].distances == measure.distances
        assert after[key].closest == measure.closest
    # and the seed still matters: another seed gives other intervals
    other = {m.key: m for m in compare_measures(rows, reference, list(rows), seed=6)}
    assert any(other[key].values != measure.values for key, measure in before.items())


def test_copy_beats_counts_the_quarters_of_the_longest_copied_run(chorale_files):
    """The headline's "copies at most N beats": a sample holding 200 tokens of a training piece
    reports exactly the quarters those tokens' time shifts span; one from an unseen piece far fewer."""
    from composer.corpus import read_piece
    from composer.metrics import TrainingIndex, copy_beats
    from composer.tokens import Kind, Vocabulary, encode_notes

    vocab = Vocabulary()
    pieces = [encode_notes(read_piece(path).notes, vocab) for path in chorale_files[:20]]
    index = TrainingIndex(pieces[:19])
    copied = pieces[5][100:300]
    kinds = vocab.kinds()[copied]
    shifts = copied[kinds == Kind.SHIFT] - vocab.shift_offset
    expected = float(np.asarray(vocab.grid)[shifts].sum() / vocab.config.steps_per_quarter)
    assert expected > 8  # a real stretch of music, not a few notes
    sample = np.concatenate([[1], copied, [2]]).astype(np.int32)
    assert copy_beats(sample, vocab, index) == expected
    unseen = copy_beats(pieces[19], vocab, index)
    assert unseen < expected / 2

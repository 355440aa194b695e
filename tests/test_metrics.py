import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.corpus import read_piece
from composer.metrics import (
    HISTOGRAMS,
    METRIC_INFO,
    NOTE_LENGTH_BINS,
    OVERLAP_STATISTICS,
    WINDOW,
    TrainingIndex,
    bits_per_note,
    kde_overlap,
    piece_statistics,
    sample_metrics,
    statistics_overlap,
)
from composer.tokens import Note, Vocabulary, encode_notes

CHORALES = Path(__file__).resolve().parents[1] / "midi_data" / "bach_chorales"
C_MAJOR = [Note(p, float(i), 1.0) for i, p in enumerate([60, 62, 64, 65, 67, 69, 71, 72])]


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary()


@pytest.fixture(scope="module")
def chorales(vocab) -> list[np.ndarray]:
    files = sorted(CHORALES.glob("*.mid"))[:8]
    return [encode_notes(read_piece(f).notes, vocab) for f in files]


def melody(pitches: list[int], start: float = 0.0) -> list[Note]:
    return [Note(p, start + i, 1.0) for i, p in enumerate(pitches)]


def test_bits_per_note_converts_nats_to_bits_per_note():
    assert bits_per_note(10 * 3 * math.log(2), 10) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        bits_per_note(1.0, 0)


def test_c_major_scale():
    stats = piece_statistics(C_MAJOR)
    assert stats.scale_consistency == 1.0
    assert stats.pitch_range == 12
    assert stats.pitch_count == 8
    assert stats.polyphony == 1.0
    assert stats.empty_beat_rate == 0.0
    assert stats.mean_pitch == pytest.approx(np.mean([60, 62, 64, 65, 67, 69, 71, 72]))
    np.testing.assert_allclose(stats.inter_onset_intervals, np.ones(7))
    assert stats.pitch_class_histogram.sum() == pytest.approx(1.0)
    assert stats.pitch_class_histogram[0] == pytest.approx(2 / 8)
    assert stats.note_length_histogram[list(NOTE_LENGTH_BINS).index(1)] == 1.0
    assert stats.pitch_count_per_bar == 4  # two bars of four different pitches


def test_chromatic_cluster_is_less_consistent_and_polyphonic():
    cluster = [Note(p, 0.0, 2.0) for p in range(60, 72)]
    stats = piece_statistics(cluster)
    assert stats.scale_consistency == pytest.approx(7 / 12)
    assert stats.scale_consistency < piece_statistics(C_MAJOR).scale_consistency
    assert stats.polyphony == 12
    assert len(stats.inter_onset_intervals) == 0 and math.isnan(stats.mean_ioi)


def test_polyphony_is_averaged_over_sounding_time_only():
    # two voices for one beat, one voice for one beat, then a silent beat before the last note
    notes = [Note(60, 0, 2), Note(64, 0, 1), Note(67, 3, 1)]
    assert piece_statistics(notes).polyphony == pytest.approx(4 / 3)


def test_empty_beat_rate_counts_beats_with_nothing_sounding():
    rest = [Note(60, 0.0, 1.0), Note(62, 3.0, 1.0)]  # beats 1 and 2 are silent
    assert piece_statistics(rest).empty_beat_rate == 0.5
    held = [Note(60, 0.0, 3.0), Note(62, 3.0, 1.0)]  # a held note is not a rest
    assert piece_statistics(held).empty_beat_rate == 0.0
    offbeat = [Note(60, 0.0, 1 / 3), Note(62, 7 / 3, 2 / 3)]  # ends on the beat: beat 1 empty
    assert piece_statistics(offbeat).empty_beat_rate == pytest.approx(1 / 3)


def test_empty_piece_gives_zeros_and_nan():
    stats = piece_statistics([])
    assert stats.notes == 0 and stats.pitch_count == 0
    assert not stats.pitch_class_histogram.any() and not stats.note_length_histogram.any()
    assert len(stats.inter_onset_intervals) == 0
    for name in ("pitch_range", "mean_pitch", "polyphony", "scale_consistency", "empty_beat_rate", "mean_ioi"):
        assert math.isnan(getattr(stats, name))


def test_identical_sets_overlap_fully():
    pieces = [melody([60, 62, 64]), melody([67, 65, 64, 62, 60]), C_MAJOR, [Note(48, 0, 4), Note(55, 0, 4)]]
    overlap = statistics_overlap(pieces, list(pieces))
    assert set(overlap) == set(OVERLAP_STATISTICS + HISTOGRAMS)
    for name, value in overlap.items():
        assert value == pytest.approx(1.0, abs=1e-6), name


def test_identical_constant_sets_overlap_fully():
    overlap = statistics_overlap([C_MAJOR] * 3, [C_MAJOR] * 2)
    assert all(value == pytest.approx(1.0) for value in overlap.values()), overlap
    shifted = statistics_overlap([C_MAJOR] * 3, [[Note(n.pitch + 1, n.start, n.duration) for n in C_MAJOR]] * 2)
    assert shifted["mean_pitch"] == 0.0 and shifted["pitch_range"] == 1.0


def test_high_and_low_register_hardly_overlap():
    rng = np.random.default_rng(1)
    low = [melody(list(rng.integers(36, 48, 16))) for _ in range(10)]
    high = [melody(list(rng.integers(84, 96, 16))) for _ in range(10)]
    assert statistics_overlap(low, high)["mean_pitch"] < 1e-3
    assert statistics_overlap(low, low)["mean_pitch"] == pytest.approx(1.0, abs=1e-6)


def test_degenerate_samples():
    assert kde_overlap([3.0, 3.0], [3.0]) == 1.0
    assert kde_overlap([3.0, 3.0], [4.0]) == 0.0
    assert 0.0 < kde_overlap([3.0], [2.0, 4.0]) < 1.0
    assert math.isnan(kde_overlap([math.nan], [1.0, 2.0]))


values = st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=20)


@settings(max_examples=60, deadline=None)
@given(values, values)
def test_overlap_is_symmetric_and_bounded(a, b):
    forward, backward = kde_overlap(a, b), kde_overlap(b, a)
    assert 0.0 <= forward <= 1.0
    assert forward == pytest.approx(backward, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(values)
def test_overlap_with_itself_is_one(a):
    assert kde_overlap(a, a) == pytest.approx(1.0, abs=1e-6)


def test_copied_piece_is_found_whole(chorales):
    index = TrainingIndex(chorales)
    piece = chorales[3]
    assert index.longest_copy(piece) == len(piece)
    assert index.window_share(piece) == 1.0
    excerpt = piece[40:140]
    assert index.longest_copy(excerpt) == 100
    assert index.window_share(excerpt) == 1.0


def test_spliced_copy_gives_longest_part(chorales):
    index = TrainingIndex(chorales)
    spliced = np.concatenate([chorales[0][10:60], chorales[1][20:140]])
    assert index.longest_copy(spliced) >= 120
    assert index.window_share(spliced) > 0.8


def test_novel_random_piece_copies_little(chorales, vocab):
    index = TrainingIndex(chorales)
    novel = np.random.default_rng(0).integers(3, len(vocab), 500).astype(np.int32)
    assert index.longest_copy(novel) < 6
    assert index.window_share(novel) == 0.0
    assert math.isnan(index.window_share(novel[:WINDOW - 1]))
    assert index.longest_copy(novel[:0]) == 0


def brute_longest_copy(sample: np.ndarray, pieces: list[np.ndarray]) -> int:
    best = 0
    for piece in pieces:
        for i in range(len(sample)):
            for p in range(len(piece)):
                k = 0
                while i + k < len(sample) and p + k < len(piece) and sample[i + k] == piece[p + k]:
                    k += 1
                best = max(best, k)
    return best


def test_longest_copy_agrees_with_brute_force():
    rng = np.random.default_rng(7)
    for _ in range(20):
        # a two-letter alphabet with planted copies makes runs of every length, short and long
        pieces = [rng.integers(0, 2, rng.integers(5, 60)) for _ in range(4)]
        sample = rng.integers(0, 2, rng.integers(1, 50))
        source = pieces[rng.integers(len(pieces))]
        cut = rng.integers(0, len(source))
        sample = np.concatenate([sample, source[cut : cut + rng.integers(1, 40)]])
        index = TrainingIndex(pieces)
        assert index.longest_copy(sample) == brute_longest_copy(sample, pieces)


def test_sample_metrics_on_real_chorales(chorales, vocab):
    train, real = chorales[:6], chorales[6:]
    index = TrainingIndex(train)
    samples = [train[0][:300], np.random.default_rng(0).integers(3, len(vocab), 300).astype(np.int32), real[0][:5]]
    metrics = sample_metrics(samples, vocab, real, index)
    assert list(metrics) == list(METRIC_INFO)
    assert all(isinstance(v, float) for v in metrics.values())
    assert all(direction in ("higher", "lower", None) for _, direction in METRIC_INFO.values())
    assert metrics["max_longest_copy"] == 300
    assert 0.0 <= metrics["mean_window_share"] <= 1.0
    for name in list(OVERLAP_STATISTICS) + list(HISTOGRAMS) + ["mean"]:
        assert 0.0 <= metrics[f"overlap_{name}"] <= 1.0, name

    real_stats = [piece_statistics(read_piece(f).notes) for f in sorted(CHORALES.glob("*.mid"))[:3]]
    for stats in real_stats:
        assert stats.scale_consistency > 0.8
        assert 2.5 < stats.polyphony <= 4.5
        assert stats.empty_beat_rate < 0.2
        assert stats.pitch_class_histogram.sum() == pytest.approx(1.0)


def test_sample_without_notes_does_not_crash(chorales, vocab):
    index = TrainingIndex(chorales[:3])
    metrics = sample_metrics([np.array([1, 2], dtype=np.int32)], vocab, chorales[3:5], index)
    assert metrics["notes"] == 0.0
    assert math.isnan(metrics["scale_consistency"]) and math.isnan(metrics["overlap_mean_pitch"])

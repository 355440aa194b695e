import math
from pathlib import Path

import numpy as np
import pytest

from composer.corpus import read_piece
from composer.metrics import (
    NOTE_LENGTH_BINS,
    TrainingIndex,
    bits_per_note,
    piece_statistics,
)
from composer.tokens import Note, Vocabulary, decode_tokens, encode_notes

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


def longest_copy(index: TrainingIndex, sample: np.ndarray) -> int:
    """The length of the longest copied run, checked to be what the sample holds at that start."""
    start, length = index.longest_copy_span(sample)
    assert 0 <= start and start + length <= len(sample)
    if length:
        run = np.asarray(sample[start : start + length], dtype=np.int64)
        assert any(
            np.array_equal(window, run) for window in np.lib.stride_tricks.sliding_window_view(index.tokens, length)
        ), f"sample[{start}:{start + length}] is not in training"
    return length


def test_copied_piece_is_found_whole(chorales):
    index = TrainingIndex(chorales)
    piece = chorales[3]
    assert index.longest_copy_span(piece) == (0, len(piece))
    assert longest_copy(index, piece[40:140]) == 100


def test_spliced_copy_gives_longest_part(chorales):
    index = TrainingIndex(chorales)
    spliced = np.concatenate([chorales[0][10:60], chorales[1][20:140]])
    assert longest_copy(index, spliced) >= 120


def test_novel_random_piece_copies_little(chorales, vocab):
    index = TrainingIndex(chorales)
    novel = np.random.default_rng(0).integers(3, len(vocab), 500).astype(np.int32)
    assert longest_copy(index, novel) < 6
    assert index.longest_copy_span(novel[:0]) == (0, 0)


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
        assert longest_copy(index, sample) == brute_longest_copy(sample, pieces)




# Training: a chromatic line of 24 eighth notes (48..71), one note at a time, and a second piece
# in quarters. Eighths, so that beats and the number of shift tokens differ.
LINE = [Note(p, i * 0.5, 0.5) for i, p in enumerate(range(48, 72))]
OTHER = melody([60, 64, 67, 72] * 6)


def copying(first: int, count: int) -> list[Note]:
    """A sample that plays ``count`` consecutive notes of LINE (from note ``first``), as LINE
    plays them, between notes LINE never has (pitches 90, 91) after and before 4-quarter gaps:
    the copied run can extend into neither side."""
    copied = [Note(n.pitch, 4.0 + n.start - LINE[first].start, n.duration) for n in LINE[first : first + count]]
    return [Note(90, 0.0, 1.0), *copied, Note(91, copied[-1].start + 4.0, 1.0)]


@pytest.mark.parametrize(
    ("first", "count", "beats"),
    [
        (0, 1, 0.0),  # one note (pitch and duration tokens): a copy, but of no time
        (5, 2, 0.5),  # 5 tokens, under WINDOW: found by the short-copy search
        (3, 9, 4.0),  # 26 tokens: found from the WINDOW-token seeds
        (0, 24, 11.5),  # the whole line
    ],
)
def test_copy_beats_counts_the_quarters_a_sample_copies(vocab, first, count, beats):
    from composer.metrics import copy_beats

    index = TrainingIndex([encode_notes(LINE, vocab), encode_notes(OTHER, vocab)])
    sample = encode_notes(copying(first, count), vocab)[1:-1]  # as compare measures: no BOS, no EOS
    # the copy is the notes' pitch and duration tokens with the shifts between them, no more
    assert longest_copy(index, sample) == 3 * count - 1
    assert copy_beats(sample, vocab, index) == beats


def test_copy_beats_is_zero_for_a_sample_sharing_no_shift_with_training(vocab):
    from composer.metrics import copy_beats

    index = TrainingIndex([encode_notes(LINE, vocab), encode_notes(OTHER, vocab)])
    # 3-quarter notes 3 quarters apart: every shift and duration token is one training never has
    # (the pitches alone are the line's)
    novel = encode_notes([Note(p, 3.0 * i, 3.0) for i, p in enumerate(range(48, 60))], vocab)[1:-1]
    assert copy_beats(novel, vocab, index) == 0.0
    assert longest_copy(index, novel) == 1  # single pitch tokens, no time

def test_real_chorales_sound_like_chorales_and_random_tokens_do_not(chorales, vocab):
    """The heard measures separate real music from noise (each could fail if its definition broke)."""
    from composer.metrics import chord_tone_rate, in_key_rate, sounding
    from composer.tokens import Grammar

    real = [decode_tokens(t, vocab) for t in chorales[:6]]
    rng = np.random.default_rng(0)
    noise = []
    for _ in range(6):
        grammar, tokens = Grammar(vocab, max_voices=4), [1]
        grammar.advance(1)
        for _ in range(400):
            allowed = grammar.allowed()
            allowed[2] = False
            tokens.append(int(rng.choice(np.flatnonzero(allowed))))
            grammar.advance(tokens[-1])
        noise.append(decode_tokens(tokens, vocab))
    for notes in real:
        stats = piece_statistics(notes)
        assert stats.scale_consistency > 0.8 and 2.5 < stats.polyphony <= 4.5 and stats.empty_beat_rate < 0.2
        assert chord_tone_rate(notes) > 0.7 and in_key_rate(notes) > 0.85
        counts, spans = sounding(notes)
        assert spans.sum() == pytest.approx(max(n.start + n.duration for n in notes) - min(n.start for n in notes))
    assert np.mean([chord_tone_rate(n) for n in noise]) < np.mean([chord_tone_rate(n) for n in real]) - 0.15
    assert np.mean([in_key_rate(n) for n in noise]) < np.mean([in_key_rate(n) for n in real]) - 0.2


# ---- the classifier two-sample test, the beat and harmony features --------------------------------


@pytest.fixture(scope="module")
def chorale_excerpts() -> list[list[Note]]:
    """8-bar excerpts (after a 2-bar opening) of 48 bundled chorales, as continuations are measured."""
    from composer.generate import continuation

    files = sorted(CHORALES.glob("*.mid"))[:48]
    return [continuation(read_piece(f).notes, 8.0, 40.0) for f in files]


def measured(pieces: list[list[Note]]) -> np.ndarray:
    from composer.compare import measure_piece
    from composer.metrics import feature_matrix

    return feature_matrix([measure_piece(p, p, RANGES) for p in pieces])


RANGES = ((60, 81), (55, 74), (48, 69), (40, 62))  # S, A, T, B as score.voice_ranges learns them


def test_classifier_cannot_tell_real_chorales_from_real_chorales(chorale_excerpts):
    from composer.metrics import classifier_test

    features = measured(chorale_excerpts)
    names = [f"piece {i}" for i in range(len(features))]
    result = classifier_test(features[0::2], features[1::2], names[0::2], names[1::2], seed=0)
    assert result.pieces == (24, 24)
    assert 0.3 <= result.accuracy <= 0.7 and result.low <= 0.5 <= result.high, result


def test_classifier_tells_random_notes_from_chorales_every_time(chorale_excerpts):
    from composer.metrics import classifier_test

    rng = np.random.default_rng(0)
    # as many notes as a chorale excerpt, random pitches in the choir's range at the same onsets
    noise = [[Note(int(rng.integers(40, 82)), n.start, n.duration) for n in piece] for piece in chorale_excerpts[:24]]
    real = measured(chorale_excerpts[24:])
    result = classifier_test(measured(noise), real, [f"noise {i}" for i in range(24)], [f"piece {i}" for i in range(24)], seed=0)
    assert result.accuracy >= 0.95 and result.low >= 0.85, result


def test_classifier_is_near_chance_on_equal_gaussians_and_grows_with_the_shift():
    from composer.metrics import CLASSIFIER_FEATURES, classifier_test

    rng = np.random.default_rng(3)
    width = len(CLASSIFIER_FEATURES)
    groups_a, groups_b = [f"a{i}" for i in range(60)], [f"b{i}" for i in range(60)]
    same = [classifier_test(rng.normal(size=(60, width)), rng.normal(size=(60, width)), groups_a, groups_b, seed=s).accuracy for s in range(5)]
    assert abs(np.mean(same) - 0.5) < 0.08, same
    shifted = [classifier_test(rng.normal(size=(60, width)), rng.normal(size=(60, width)) + shift, groups_a, groups_b).accuracy for shift in (0.3, 3.0)]
    assert shifted[0] < shifted[1] and shifted[1] > 0.98, shifted


def test_classifier_keeps_a_group_on_one_side_of_every_fold():
    from composer.metrics import CLASSIFIER_FEATURES, classifier_test

    # each group's pieces are identical copies: a classifier allowed to see a group in training
    # would recognise it; kept to one side, it is back to chance
    rng = np.random.default_rng(5)
    width = len(CLASSIFIER_FEATURES)
    a, b = rng.normal(size=(20, width)), rng.normal(size=(20, width))
    first, second = np.repeat(a, 4, axis=0), np.repeat(b, 4, axis=0)
    groups = [f"g{i}" for i in range(20) for _ in range(4)]
    result = classifier_test(first, second, groups, [f"h{i}" for i in range(20) for _ in range(4)], seed=0)
    assert result.accuracy < 0.75, result


def test_too_few_pieces_give_no_verdict_rather_than_a_number():
    from composer.metrics import CLASSIFIER_FEATURES, classifier_test

    one = np.zeros((1, len(CLASSIFIER_FEATURES)))
    assert math.isnan(classifier_test(one, one, ["a"], ["b"]).accuracy)


def test_beat_measures_catch_a_chorale_shifted_by_a_sixteenth(chorale_excerpts):
    from composer.metrics import beat_measures

    piece = chorale_excerpts[0]
    shifted = [Note(n.pitch, n.start + 0.25, n.duration) for n in piece]
    real, lost = beat_measures(piece), beat_measures(shifted)
    assert real["on_beat_share"] > 0.6 and real["odd_sixteenth_share"] < 0.05, real
    assert lost["on_beat_share"] < 0.05 and lost["odd_sixteenth_share"] > 0.6, lost


def test_harmony_features_read_chords_and_the_top_voice():
    from composer.metrics import harmony_features

    dominant = [Note(p, 0.0, 1.0) for p in (43, 59, 62, 65)]  # G7: G B D F
    cluster = [Note(p, 1.0, 1.0) for p in (60, 61, 62)]
    values = harmony_features(dominant + cluster)
    assert values["dominant_seventh_share"] == 0.5 and values["non_chord_sonority_share"] == 0.5
    # top voice F -> D: a minor third
    assert values["top_semitone_share"] == 0 and values["top_step_share"] == 0 and values["top_leap_share"] == 0
    scale = harmony_features(melody([60, 61, 63, 70]))
    assert scale["top_semitone_share"] == pytest.approx(1 / 3) and scale["top_step_share"] == pytest.approx(1 / 3)
    assert scale["top_leap_share"] == pytest.approx(1 / 3)

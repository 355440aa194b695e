"""Measures of a model and of its music: bits per note, musical statistics, what a listener hears
(harmony, key, voices), what a score shows (via score.py), memorization, and bootstrap intervals.

See DESIGN.md, "Measures". Statistics follow MusPy's metrics and Yang & Lerch (2018), "On the
evaluation of generative models in music"; times are in quarter notes and a beat is a quarter.
compare.py turns these per-piece values into verdicts with uncertainty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from composer.corpus import KEY_NAMES, estimate_key
from composer.score import VOICE_LEADING_RATES, is_chorale_texture, several_instruments, voice_leading
from composer.tokens import Note, Vocabulary, pitched

WINDOW = 16  # tokens per window for memorization, as the near-duplicate screen in dataset.py

# Yang & Lerch's note-length classes, in quarters: 16th, 8th triplet, dotted 16th, 8th, quarter
# triplet, dotted 8th, quarter, half triplet, dotted quarter, half, dotted half, whole.
NOTE_LENGTH_BINS = np.array([1 / 4, 1 / 3, 3 / 8, 1 / 2, 2 / 3, 3 / 4, 1, 4 / 3, 3 / 2, 2, 3, 4])

# Natural minor, as MusPy; rows 0-11 are the major scales on C..B, rows 12-23 the minor ones.
_MAJOR = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], dtype=bool)
_MINOR = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0], dtype=bool)
SCALES = np.array([np.roll(mask, root) for mask in (_MAJOR, _MINOR) for root in range(12)])

# Onsets and ends are sums of float fractions such as 1/3; a note ending "at" a beat must not
# spill into the next one because of rounding.
_TIME_EPS = 1e-6


def bits_per_note(total_nll_nats: float, notes: int) -> float:
    """A piece's negative log-likelihood (nats, summed over its tokens) as bits per note.

    Per note rather than per token so that tokenizations and the n-gram baseline compare.
    """
    if notes <= 0:
        raise ValueError("bits per note needs at least one note")
    return total_nll_nats / (notes * math.log(2))


@dataclass(frozen=True, eq=False)  # arrays inside: == and hash would be ambiguous
class PieceStatistics:
    """Statistics of one piece. A piece without notes has zero counts, all-zero histograms,
    no inter-onset intervals and NaN for every mean, ratio and extent (as MusPy returns NaN)."""

    notes: int
    pitch_class_histogram: np.ndarray  # 12 shares of notes, C first; sums to 1
    note_length_histogram: np.ndarray  # shares of notes per NOTE_LENGTH_BINS class; sums to 1
    inter_onset_intervals: np.ndarray  # quarters between consecutive distinct onsets
    pitch_range: float  # highest minus lowest pitch, semitones
    pitch_count: int  # distinct pitches
    pitch_count_per_bar: float  # distinct pitches per bar, over bars where a note starts
    mean_pitch: float
    polyphony: float  # mean notes sounding, over the time when at least one sounds (MusPy)
    scale_consistency: float  # largest share of notes in one major or minor scale (MusPy)
    empty_beat_rate: float  # share of beats, up to the last note's end, with nothing sounding
    mean_ioi: float


def piece_statistics(notes: list[Note], beats_per_bar: int = 4) -> PieceStatistics:
    """Musical statistics of one piece (see ``PieceStatistics``); bars are ``beats_per_bar`` quarters."""
    if not notes:
        nan = math.nan
        return PieceStatistics(
            notes=0,
            pitch_class_histogram=np.zeros(12),
            note_length_histogram=np.zeros(len(NOTE_LENGTH_BINS)),
            inter_onset_intervals=np.zeros(0),
            pitch_range=nan,
            pitch_count=0,
            pitch_count_per_bar=nan,
            mean_pitch=nan,
            polyphony=nan,
            scale_consistency=nan,
            empty_beat_rate=nan,
            mean_ioi=nan,
        )
    pitches = np.array([n.pitch for n in notes])
    starts = np.array([n.start for n in notes], dtype=float)
    durations = np.array([n.duration for n in notes], dtype=float)
    ends = starts + durations
    classes = np.bincount(pitches % 12, minlength=12)
    onsets = np.unique(np.round(starts / _TIME_EPS) * _TIME_EPS)
    iois = np.diff(onsets)
    bars = np.floor(starts / beats_per_bar + _TIME_EPS).astype(np.int64)
    return PieceStatistics(
        notes=len(notes),
        pitch_class_histogram=classes / len(notes),
        note_length_histogram=_note_length_histogram(durations),
        inter_onset_intervals=iois,
        pitch_range=float(pitches.max() - pitches.min()),
        pitch_count=len(np.unique(pitches)),
        pitch_count_per_bar=len(np.unique(bars * 128 + pitches)) / len(np.unique(bars)),
        mean_pitch=float(pitches.mean()),
        polyphony=_polyphony(starts, ends),
        scale_consistency=float((SCALES @ classes).max() / len(notes)),
        empty_beat_rate=_empty_beat_rate(starts, ends),
        mean_ioi=float(iois.mean()) if len(iois) else math.nan,
    )


def _note_length_histogram(durations: np.ndarray) -> np.ndarray:
    # nearest class on a log scale: a note twice too long is as wrong as one half too short
    distance = np.abs(np.log2(durations[:, None]) - np.log2(NOTE_LENGTH_BINS[None, :]))
    counts = np.bincount(distance.argmin(axis=1), minlength=len(NOTE_LENGTH_BINS))
    return counts / len(durations)


def _polyphony(starts: np.ndarray, ends: np.ndarray) -> float:
    # MusPy counts pianoroll steps; integrating over exact time spans is its limit at fine steps.
    counts, spans = _sounding(starts, ends)
    heard = spans[counts > 0].sum()
    return float((counts * spans).sum() / heard) if heard > 0 else math.nan


def _empty_beat_rate(starts: np.ndarray, ends: np.ndarray) -> float:
    beats = int(math.ceil(ends.max() - _TIME_EPS))
    if beats <= 0:
        return math.nan
    # beat b is [b, b + 1): a note covers the beats from floor(start) up to ceil(end), exclusive
    first = np.floor(starts + _TIME_EPS).astype(np.int64)
    last = np.ceil(ends - _TIME_EPS).astype(np.int64)
    change = np.zeros(beats + 1)
    np.add.at(change, first, 1)
    np.add.at(change, last, -1)
    return float(np.mean(np.cumsum(change)[:-1] <= 0))


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    return array[np.isfinite(array)]


# 64-bit polynomial hashing (mod 2**64, by numpy's wrapping uint64 arithmetic). The base is odd,
# so it has an inverse, which makes every window's hash a difference of two prefix sums.
_BASE = 0x9E3779B97F4A7C15
_BASE_INVERSE = pow(_BASE, -1, 2**64)
_SEPARATOR = -1  # between training pieces; never in a sample, so no match runs across pieces


def _powers(base: int, count: int) -> np.ndarray:
    powers = np.full(count, base, dtype=np.uint64)
    powers[:1] = 1
    return np.cumprod(powers)


class _Hashes:
    """Prefix sums from which the hash of any window of a token array comes in O(1), vectorized.

    window(i, L) = sum of (t[j] + 1) * BASE**-(j - i) over j in [i, i + L): the same value
    wherever the window sits, so windows of a sample and of the training pieces compare.
    """

    def __init__(self, tokens: np.ndarray):
        values = (np.asarray(tokens, dtype=np.int64) + 1).astype(np.uint64)
        self.prefix = np.concatenate([np.zeros(1, np.uint64), np.cumsum(values * _powers(_BASE_INVERSE, len(values)))])
        self.scale = _powers(_BASE, len(values) + 1)

    def window(self, start: np.ndarray, length: np.ndarray | int) -> np.ndarray:
        return (self.prefix[start + length] - self.prefix[start]) * self.scale[start]

    def all_windows(self, length: int) -> np.ndarray:
        return self.window(np.arange(len(self.prefix) - length), length)


def _contains(sorted_hashes: np.ndarray, queries: np.ndarray) -> np.ndarray:
    if not len(sorted_hashes):
        return np.zeros(len(queries), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_hashes, queries), len(sorted_hashes) - 1)
    return sorted_hashes[at] == queries


class TrainingIndex:
    """Which runs of tokens occur verbatim in the training pieces, by hashed windows.

    Built once: the pieces joined with separators, their prefix hashes, the sorted hashes of
    every window of 1..WINDOW-1 tokens, and for WINDOW-token windows where they start. Then
    ``longest_copy_span`` finds each WINDOW-token window of the sample that occurs in training
    (the seeds of every run at least that long), extends all seed pairs at once by binary
    search on the run length, keeping only pairs that cannot extend to the left; a sample
    without seeds copies less than WINDOW tokens, found by binary search on the length over
    the sorted hashes of short windows.

    Hashes are 64 bits, so a false match needs a collision (about 1e-19 per comparison of
    ordinary, not adversarial, token runs). Memory is about 100 bytes per training token;
    on the 225k-token bundled chorales, building takes about 0.4 s and a query under 1 ms.
    """

    def __init__(self, pieces: list[np.ndarray]):
        joined = [np.array([_SEPARATOR])]
        for piece in pieces:
            joined += [np.asarray(piece, dtype=np.int64), np.array([_SEPARATOR])]
        self.tokens = np.concatenate(joined)
        self.hashes = _Hashes(self.tokens)
        seeds = self.hashes.all_windows(WINDOW)
        order = np.argsort(seeds)
        self.seed_hashes, self.seed_starts = seeds[order], order
        self.windows = {length: np.unique(self.hashes.all_windows(length)) for length in range(1, WINDOW)}

    def longest_copy_span(self, sample: np.ndarray) -> tuple[int, int]:
        """(start in the sample, length) of the longest run of tokens found verbatim in training."""
        sample = np.asarray(sample, dtype=np.int64)
        hashes = _Hashes(sample)
        if len(sample) >= WINDOW:
            windows = hashes.all_windows(WINDOW)
            lo = np.searchsorted(self.seed_hashes, windows, side="left")
            hi = np.searchsorted(self.seed_hashes, windows, side="right")
            if (hi > lo).any():
                return self._extend(sample, hashes, lo, hi)
        return self._short_copy(sample, hashes)

    def _extend(self, sample: np.ndarray, hashes: _Hashes, lo: np.ndarray, hi: np.ndarray) -> tuple[int, int]:
        counts = hi - lo
        at = np.repeat(np.arange(len(sample) - WINDOW + 1), counts)
        # the k-th training occurrence of each sample window, for all windows at once
        rank = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        start = self.seed_starts[np.repeat(lo, counts) + rank]
        maximal = (at == 0) | (sample[at - 1] != self.tokens[start - 1])
        at, start = at[maximal], start[maximal]
        low = np.full(len(at), WINDOW)
        high = np.minimum(len(sample) - at, len(self.tokens) - start)
        while (low < high).any():
            mid = (low + high + 1) // 2
            same = hashes.window(at, mid) == self.hashes.window(start, mid)
            low, high = np.where(same, mid, low), np.where(same, high, mid - 1)
        best = int(low.argmax())
        return int(at[best]), int(low[best])

    def _short_copy(self, sample: np.ndarray, hashes: _Hashes) -> tuple[int, int]:
        low, high = 0, min(WINDOW - 1, len(sample))
        while low < high:
            mid = (low + high + 1) // 2
            if _contains(self.windows[mid], hashes.all_windows(mid)).any():
                low = mid
            else:
                high = mid - 1
        if low == 0:
            return 0, 0
        return int(np.flatnonzero(_contains(self.windows[low], hashes.all_windows(low)))[0]), low


def copy_beats(sample: np.ndarray, vocab: Vocabulary, index: TrainingIndex) -> float:
    """The longest run of tokens copied from training, as the quarters its time shifts span."""
    start, length = index.longest_copy_span(sample)
    tokens = np.asarray(sample[start : start + length])
    shifts = (tokens >= vocab.shift_offset) & (tokens < vocab.pitch_offset)
    grid = np.asarray(vocab.grid, dtype=float)
    return float(grid[tokens[shifts] - vocab.shift_offset].sum() / vocab.config.steps_per_quarter)


# ---- what a listener hears: harmony, key, voices, copying ----------------------------------------

# Triads (major, minor, diminished, augmented) and seventh chords (dominant, major, minor,
# half-diminished, diminished) on every root, as 12-bit pitch-class sets.
_CHORD_SHAPES = [(0, 4, 7), (0, 3, 7), (0, 3, 6), (0, 4, 8), (0, 4, 7, 10), (0, 4, 7, 11), (0, 3, 7, 10), (0, 3, 6, 10), (0, 3, 6, 9)]
_CHORD_SETS = np.array(
    sorted({sum(1 << ((root + i) % 12) for i in shape) for shape in _CHORD_SHAPES for root in range(12)}), dtype=np.int64
)


def sounding(notes: list[Note]) -> tuple[np.ndarray, np.ndarray]:
    """Notes sounding over time as (counts, spans): ``counts[i]`` notes for ``spans[i]`` quarters,
    from the first onset to the last note's end (rests included, with a count of 0)."""
    if not notes:
        return np.zeros(0, np.int64), np.zeros(0)
    starts = np.array([n.start for n in notes], dtype=float)
    return _sounding(starts, starts + np.array([n.duration for n in notes], dtype=float))


def _sounding(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    starts, ends = np.sort(starts), np.sort(ends)
    times = np.unique(np.round(np.concatenate([starts, ends]) / _TIME_EPS) * _TIME_EPS)
    counts = np.searchsorted(starts, times[:-1] + _TIME_EPS / 2) - np.searchsorted(ends, times[:-1] + _TIME_EPS / 2)
    return counts.astype(np.int64), np.diff(times)


def voice_ceiling(pieces: list[list[Note]], share: float = 0.01, pieces_within: float = 0.9) -> int:
    """The fewest voices that most pieces (``pieces_within``) exceed less than ``share`` of their time.

    Neither the maximum nor pooled time works on real corpora: among the bundled chorales a few
    with instrumental parts reach 15 notes, and pooled over all pieces they hold 5 or more
    notes 4 % of the time, while 94 % of the chorales stay within 4 voices for 99 % of theirs.
    """
    ceilings = []
    for notes in pieces:
        counts, spans = sounding(notes)
        if spans.sum() <= 0:
            continue
        totals = np.bincount(np.minimum(counts, 128), weights=spans, minlength=129)
        above = 1.0 - np.cumsum(totals) / totals.sum()  # above[k]: share of time with more than k notes
        ceilings.append(int(np.argmax(above < share)))
    if not ceilings:
        return 0
    return int(np.ceil(np.quantile(ceilings, pieces_within, method="higher")))


def sonorities(notes: list[Note], block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """At each distinct onset, in time order: the pitch classes sounding there (a 12-bit set) and
    the highest pitch sounding (-1: none). What the chord and top-voice measures read, for all
    onsets at once (``block`` onsets a time bound the onsets x notes table of a long piece)."""
    starts = np.array([n.start for n in notes], dtype=float)
    ends = starts + np.array([n.duration for n in notes], dtype=float)
    pitches = np.array([n.pitch for n in notes], dtype=np.int64)
    onsets = np.unique(np.round(starts / _TIME_EPS) * _TIME_EPS)
    chords, tops = np.zeros(len(onsets), np.int64), np.full(len(onsets), -1, np.int64)
    for first in range(0, len(onsets), block):
        at = onsets[first : first + block, None] + _TIME_EPS / 2
        heard = (starts <= at) & (ends > at)  # onsets x notes
        chords[first : first + block] = np.bitwise_or.reduce(np.where(heard, np.left_shift(1, pitches % 12), 0), axis=1)
        tops[first : first + block] = np.where(heard, pitches, -1).max(axis=1)
    return chords, tops


def is_chord(chords: np.ndarray) -> np.ndarray:
    """Whether each pitch-class set is (part of) a triad or seventh chord."""
    return ((_CHORD_SETS[None, :] & chords[:, None]) == chords[:, None]).any(axis=1)


def chord_tone_rate(notes: list[Note]) -> float:
    """Share of onsets where the notes sounding form (part of) a triad or seventh chord."""
    if not notes:
        return math.nan
    return float(is_chord(sonorities(notes)[0]).mean())


def key_pitch_classes(notes: list[Note]) -> np.ndarray:
    """The 12-bit scale mask of the notes' estimated key; minor keys with the raised 6th and 7th
    too (melodic and harmonic minor), as the chorales use them."""
    name = estimate_key(notes)
    if not name:
        return np.zeros(12, dtype=bool)
    root, mode = name.split()
    steps = (0, 2, 4, 5, 7, 9, 11) if mode == "major" else (0, 2, 3, 5, 7, 8, 9, 10, 11)
    mask = np.zeros(12, dtype=bool)
    mask[[(KEY_NAMES.index(root) + s) % 12 for s in steps]] = True
    return mask


def in_key_rate(notes: list[Note], context: list[Note] | None = None) -> float:
    """Share of ``notes`` in the key estimated from ``context`` (the primer and the notes, say)."""
    if not notes:
        return math.nan
    scale = key_pitch_classes(context if context else notes)
    return float(np.mean([scale[n.pitch % 12] for n in notes]))


def heard_measures(notes: list[Note], context: list[Note]) -> dict[str, float]:
    """The measures of one continuation that a listener hears (MEASURES says what each means).

    No share of time above the voice ceiling: sampling enforces the ceiling, so it is 0 for
    every model by construction and could never tell two apart.
    """
    counts, spans = sounding(notes)
    total = spans.sum()
    return {
        "chord_tone_rate": chord_tone_rate(notes),
        "in_key_rate": in_key_rate(notes, context),
        "mean_voices": float((counts * spans).sum() / total) if total > 0 else math.nan,
        **beat_measures(notes),
    }


def beat_measures(notes: list[Note]) -> dict[str, float]:
    """Where onsets fall in the beat: the share on a quarter beat, and the share on the 2nd or
    4th sixteenth of one. A model that has lost the beat moves its onsets off the beat for bars
    on end, which no pitch measure sees; real chorales put under 1 % on odd sixteenths.

    Times are quarters from a barline (continuations start at the primer's end, a barline).
    """
    if not notes:
        return {"on_beat_share": math.nan, "odd_sixteenth_share": math.nan}
    onsets = np.unique(np.round(np.array([n.start for n in notes], dtype=float) / _TIME_EPS) * _TIME_EPS)
    sixteenths = onsets * 4
    on_grid = np.abs(sixteenths - np.round(sixteenths)) < 1e-3
    odd = on_grid & (np.round(sixteenths).astype(np.int64) % 2 == 1)
    on_beat = np.abs(onsets - np.round(onsets)) < 1e-3
    return {"on_beat_share": float(on_beat.mean()), "odd_sixteenth_share": float(odd.mean())}


def harmony_features(notes: list[Note]) -> dict[str, float]:
    """What gives generated chorales away beyond the page's measures (the classifier's extra
    features): sonorities of 3+ pitch classes that are no triad or seventh, dominant sevenths
    (complete, or root, third and seventh), and how the top voice moves (semitones, whole
    tones, leaps of more than a fourth)."""
    nan = math.nan
    if not notes:
        return dict.fromkeys(("non_chord_sonority_share", "dominant_seventh_share", "top_semitone_share", "top_step_share", "top_leap_share"), nan)
    chords, tops = sonorities(notes)
    full_chords = chords[np.bitwise_count(chords) >= 3]
    full = len(full_chords)
    non_chord = int((~is_chord(full_chords)).sum())
    dominant = np.zeros(full, dtype=bool)
    for core, seventh in _DOMINANTS:
        dominant |= ((full_chords & core) == core) & ((full_chords | seventh) == seventh)
    top_line = tops[np.r_[True, tops[1:] != tops[:-1]]]  # consecutive onsets under one top note: one
    moves = np.abs(np.diff(top_line))
    share = (lambda k: float(k / full)) if full else (lambda k: nan)
    by_move = (lambda mask: float(mask.mean())) if len(moves) else (lambda mask: nan)
    return {
        "non_chord_sonority_share": share(non_chord),
        "dominant_seventh_share": share(int(dominant.sum())),
        "top_semitone_share": by_move(moves == 1),
        "top_step_share": by_move(moves == 2),
        "top_leap_share": by_move(moves > 5),
    }


# (root + third + seventh, the whole chord) of the dominant seventh on every root, as bit sets
_DOMINANTS = [
    (sum(1 << ((r + i) % 12) for i in (0, 4, 10)), sum(1 << ((r + i) % 12) for i in (0, 4, 7, 10))) for r in range(12)
]


def score_measures(notes: list[Note], ranges) -> dict[str, float]:
    """What a score of the piece shows, read as four voices (score.voice_leading): parallel
    fifths and octaves per 100 moves of a voice pair, crossings, notes outside the voices'
    ranges (``ranges`` from real pieces, ``score.voice_ranges``). Drums are left out; music of
    several instruments is read so only where its texture is 4-part (undefined otherwise: a
    band is no choir)."""
    notes = pitched(notes)
    if several_instruments(notes) and not is_chorale_texture(notes):
        return dict.fromkeys(VOICE_LEADING_RATES, math.nan)
    return voice_leading(notes, ranges).rates()


@dataclass(frozen=True)
class MeasureInfo:
    """How the page names a measure: in words, its unit, and what a listener hears when it is off."""

    name: str
    unit: str
    hear: str


# The measures compared with real music, by what a listener notices first: the one registry the
# page, metrics.csv and the verdict read (compare.measure_piece computes them).
MEASURES: dict[str, MeasureInfo] = {
    "chord_tone_rate": MeasureInfo("chords", "share of onsets forming a triad or seventh", "clashing sonorities where too low"),
    "in_key_rate": MeasureInfo("in key", "share of notes in the key of primer and continuation", "wrong notes, wandering tonality where too low"),
    "mean_voices": MeasureInfo("voices", "notes sounding at once, on average", "thin or crowded texture"),
    "parallel_fifths_per_100": MeasureInfo("parallel fifths", "per 100 moves of a voice pair (SATB)", "hollow, forbidden-sounding motion"),
    "parallel_octaves_per_100": MeasureInfo("parallel octaves", "per 100 moves of a voice pair", "voices collapsing into one"),
    "crossing_share": MeasureInfo("voice crossings", "share of onsets where two voices cross", "tangled inner voices"),
    "out_of_range_share": MeasureInfo("out of range", "share of notes outside their voice's range", "voices that no choir sings"),
    "pitch_range": MeasureInfo("pitch range", "highest minus lowest pitch, semitones", "too narrow or too wide a compass"),
    "pitch_count_per_bar": MeasureInfo("pitches per bar", "distinct pitches per bar", "static or restless harmony"),
    "mean_ioi": MeasureInfo("onset spacing", "mean quarters between onsets", "too busy or too slow rhythm"),
    "empty_beat_rate": MeasureInfo("silent beats", "share of beats with nothing sounding", "gaps in the music"),
    "on_beat_share": MeasureInfo("onsets on the beat", "share of onsets on a quarter beat", "a lost or shifted beat where too low"),
    "odd_sixteenth_share": MeasureInfo("onsets on odd sixteenths", "share on the 2nd/4th sixteenth of a beat", "syncopation a chorale never has"),
}


# ---- uncertainty ---------------------------------------------------------------------------------

BOOTSTRAP_DRAWS = 2000


def bootstrap_means(values: Sequence[float], seed: int | Sequence[int] = 0, draws: int = BOOTSTRAP_DRAWS) -> np.ndarray:
    """Means of ``draws`` resamples (with replacement) of the finite values; empty if none."""
    finite = _finite(values)
    if not len(finite):
        return np.zeros(0)
    rng = np.random.default_rng(seed)
    return finite[rng.integers(0, len(finite), (draws, len(finite)))].mean(axis=1)


def interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap draws (percentile method)."""
    if not len(draws):
        return (math.nan, math.nan)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


# ---- telling samples from real music: a classifier two-sample test --------------------------------

# Every page measure and the harmony features: what a musician would listen for. No pitch-class
# or length histograms: they mostly tell keys and metres apart, which openings already fix.
HARMONY_FEATURES = ("non_chord_sonority_share", "dominant_seventh_share", "top_semitone_share", "top_step_share", "top_leap_share")
CLASSIFIER_FEATURES = (*MEASURES, *HARMONY_FEATURES)
CLASSIFIER_FOLDS = 5


@dataclass(frozen=True)
class Distinguishability:
    """How often a classifier tells two sets of pieces apart: balanced accuracy of held-out
    predictions (0.5: indistinguishable, 1.0: always told apart) with a 95 % bootstrap interval."""

    accuracy: float
    low: float
    high: float
    pieces: tuple[int, int]  # how many in each set


def feature_matrix(pieces: Sequence[dict[str, float]]) -> np.ndarray:
    """CLASSIFIER_FEATURES of each piece's measures as rows; NaN where a measure is undefined."""
    matrix = np.array([[p.get(k, math.nan) for k in CLASSIFIER_FEATURES] for p in pieces], dtype=float).reshape(-1, len(CLASSIFIER_FEATURES))
    matrix[~np.isfinite(matrix)] = math.nan
    return matrix


def classifier_test(
    first: np.ndarray, second: np.ndarray, first_groups: Sequence[str], second_groups: Sequence[str], seed: int = 0, draws: int = BOOTSTRAP_DRAWS
) -> Distinguishability:
    """A classifier two-sample test (Lopez-Paz & Oquab, 2017): a standardized logistic regression
    learns to tell rows of ``first`` from rows of ``second``, cross-validated in folds that keep
    each group (a piece or an opening) on one side, so it cannot win by recognising a piece. The
    interval resamples groups. Logistic regression rather than boosting: with tens of pieces a
    side, a simple model gives a steadier estimate, and what it weighs can be read.
    """
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sizes = (len(first), len(second))
    features = np.vstack([first, second])
    labels = np.r_[np.zeros(len(first), np.int64), np.ones(len(second), np.int64)]
    groups = np.array([*first_groups, *second_groups])
    names, group_of = np.unique(groups, return_inverse=True)
    # every fold needs both sets: no more folds than either set has groups
    folds = min(CLASSIFIER_FOLDS, len(set(first_groups)), len(set(second_groups)))
    usable = ~np.isnan(features).all(axis=0)
    if min(sizes) < 2 or folds < 2 or not usable.any():
        return Distinguishability(math.nan, math.nan, math.nan, sizes)
    model = make_pipeline(
        SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000)
    )
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    predicted = cross_val_predict(model, features[:, usable], labels, groups=group_of, cv=splitter)
    # per group: (right in first, count in first, right in second, count in second)
    right = predicted == labels
    tally = np.zeros((len(names), 4))
    for column, (which, value) in enumerate([(0, right), (0, None), (1, right), (1, None)]):
        mask = labels == which
        np.add.at(tally[:, column], group_of[mask], right[mask] if value is not None else 1.0)
    rng = np.random.default_rng(seed)
    resampled = tally[rng.integers(0, len(names), (draws, len(names)))].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracies = (resampled[:, 0] / resampled[:, 1] + resampled[:, 2] / resampled[:, 3]) / 2
    whole = tally.sum(axis=0)
    low, high = interval(accuracies[np.isfinite(accuracies)])
    return Distinguishability(float((whole[0] / whole[1] + whole[2] / whole[3]) / 2), low, high, sizes)

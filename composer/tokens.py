"""Notes ⇄ tokens: the vocabulary, the beat grid and the grammar of a token stream.

One stream of events per piece (the vocabulary's table is ``token_groups``):

    BOS  [TimeShift]*  Pitch [Velocity] Duration  Pitch [Velocity] Duration ...  TimeShift ...  EOS

* Time is counted in grid *steps*; ``steps_per_quarter`` = 12 represents sixteenths (3 steps)
  and eighth-note triplets (4 steps) exactly.
* ``TimeShift`` and ``Duration`` take values from the same set: every step up to one quarter,
  then a coarser grid beyond (``beat_res``, as MidiTok's). A shift longer than the largest
  value is written as several shifts; the decomposition is greedy (largest first), which makes
  it canonical, so ``encode(decode(tokens)) == tokens`` for every grammatical stream.
* Notes sharing an onset form a chord and are written in ascending pitch.
* A pitch cannot be struck again while it still sounds (the earlier note is shortened on
  encoding), which keeps every decoded stream writable as MIDI without loss.

Token names document themselves: ``TimeShift_1/4`` is a sixteenth, ``Duration_3/2`` a dotted
quarter, ``Pitch_60`` middle C, ``Velocity_3`` the fourth of ``velocity_bins`` bins.
"""

from __future__ import annotations

import bisect
import enum
import functools
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Iterable, Sequence

import numpy as np

from composer.config import within

PAD, BOS, EOS = 0, 1, 2
DEFAULT_VELOCITY = 90


@dataclass(frozen=True)
class Note:
    """One sounding note; times in quarter notes from the start of the piece."""

    pitch: int
    start: float
    duration: float
    velocity: int = DEFAULT_VELOCITY


@dataclass(frozen=True, eq=False)
class NoteColumns(Sequence[Note]):
    """Notes as four arrays, one entry per note: what a reader builds from a parser's arrays and
    what encoding, silences and the key work on, so that tokenizing a file makes no Note at all.
    Still a sequence of Notes (built on first use) equal to the list of the same notes."""

    pitches: np.ndarray  # int64
    starts: np.ndarray  # float64, quarters
    durations: np.ndarray  # float64, quarters
    velocities: np.ndarray  # int64

    @staticmethod
    def of(notes: Iterable[Note]) -> "NoteColumns":
        if isinstance(notes, NoteColumns):
            return notes
        notes = list(notes)
        return NoteColumns(
            np.fromiter((n.pitch for n in notes), np.int64, len(notes)),
            np.fromiter((n.start for n in notes), float, len(notes)),
            np.fromiter((n.duration for n in notes), float, len(notes)),
            np.fromiter((n.velocity for n in notes), np.int64, len(notes)),
        )

    @functools.cached_property
    def notes(self) -> list[Note]:
        # filled through __dict__ at half the cost of Note() (a frozen dataclass sets every field
        # through object.__setattr__); each equals, hashes and prints as Note(...) would
        new, made = object.__new__, []
        columns = (self.pitches.tolist(), self.starts.tolist(), self.durations.tolist(), self.velocities.tolist())
        for pitch, start, duration, velocity in zip(*columns):
            note = new(Note)
            note.__dict__.update(pitch=pitch, start=start, duration=duration, velocity=velocity)
            made.append(note)
        return made

    def __len__(self) -> int:
        return len(self.pitches)

    def __getitem__(self, index):
        return self.notes[index]

    def __iter__(self):
        return iter(self.notes)

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, Sequence) else NotImplemented


@dataclass(frozen=True)
class TokenizerConfig:
    steps_per_quarter: int = field(default=12, metadata=within(1, 96))
    # (from quarter, to quarter, values per quarter) for shifts and durations
    beat_res: tuple[tuple[int, int, int], ...] = field(default=((0, 1, 12), (1, 4, 4), (4, 8, 1)), metadata=within(0, 96))
    pitch_low: int = field(default=21, metadata=within(0, 127))
    pitch_high: int = field(default=108, metadata=within(0, 127))
    velocity_bins: int = field(default=0, metadata=within(0, 127))  # 0 = velocity is not tokenized

    @staticmethod
    def from_dict(data: dict) -> "TokenizerConfig":
        data = dict(data)
        data["beat_res"] = tuple(tuple(r) for r in data["beat_res"])
        return TokenizerConfig(**data)


def grid_values(config: TokenizerConfig) -> list[int]:
    """The step counts a TimeShift or a Duration can take, ascending."""
    spq = config.steps_per_quarter
    values: list[int] = []
    for lo, hi, per_quarter in config.beat_res:
        if not 0 <= lo < hi or per_quarter < 1:
            raise ValueError(f"beat_res ({lo}, {hi}, {per_quarter}): want 0 <= from < to and at least 1 value per quarter")
        if spq % per_quarter:
            raise ValueError(f"beat_res {per_quarter} per quarter does not divide {spq} steps")
        step = spq // per_quarter
        values.extend(range(lo * spq + step, hi * spq + 1, step))
    return sorted(set(values))


class Kind(enum.IntEnum):
    """What a token stands for; the order of the groups in the vocabulary."""

    SPECIAL = 0
    SHIFT = 1
    PITCH = 2
    VELOCITY = 3
    DURATION = 4


@dataclass(frozen=True)
class TokenGroup:
    """One row of the vocabulary's table: a kind of token, its name, one label per value."""

    kind: Kind
    name: str  # the tokens' name before "_" ("" for the specials, named by their label alone)
    labels: tuple[str, ...]
    offset: int  # the first token id of the group

    @property
    def ids(self) -> slice:
        return slice(self.offset, self.offset + len(self.labels))

    def names(self) -> list[str]:
        return [f"{self.name}_{label}" if self.name else label for label in self.labels]


def token_groups(config: TokenizerConfig) -> tuple[TokenGroup, ...]:
    """The vocabulary as a table, in token-id order: every offset, name and kind derives from it.

    ======== ============ ============================================ =====================
    kind     name         values                                       e.g.
    ======== ============ ============================================ =====================
    special  PAD BOS EOS  padding, start and end of a piece            BOS
    shift    TimeShift    the grid (``beat_res``), in quarters         TimeShift_1/4: a 16th
    pitch    Pitch        MIDI pitches ``pitch_low``-``pitch_high``    Pitch_60: middle C
    velocity Velocity     ``velocity_bins`` bins (none by default)     Velocity_3
    duration Duration     the grid, in quarters                        Duration_3/2
    ======== ============ ============================================ =====================
    """
    spq = config.steps_per_quarter
    times = tuple(str(Fraction(v, spq)) for v in grid_values(config))
    rows = [
        (Kind.SPECIAL, "", ("PAD", "BOS", "EOS")),
        (Kind.SHIFT, "TimeShift", times),
        (Kind.PITCH, "Pitch", tuple(str(p) for p in range(config.pitch_low, config.pitch_high + 1))),
        (Kind.VELOCITY, "Velocity", tuple(str(i) for i in range(config.velocity_bins))),
        (Kind.DURATION, "Duration", times),
    ]
    groups, offset = [], 0
    for kind, name, labels in rows:
        groups.append(TokenGroup(kind, name, labels, offset))
        offset += len(labels)
    return tuple(groups)


@dataclass(frozen=True)
class Vocabulary:
    """Token ids ⇄ events. Fixed by the configuration alone, never by a corpus."""

    config: TokenizerConfig = field(default_factory=TokenizerConfig)

    @functools.cached_property
    def grid(self) -> list[int]:
        return grid_values(self.config)

    @functools.cached_property
    def groups(self) -> dict[Kind, TokenGroup]:
        return {group.kind: group for group in token_groups(self.config)}

    @property
    def pitches(self) -> range:
        return range(self.config.pitch_low, self.config.pitch_high + 1)

    def ids(self, kind: Kind) -> slice:
        return self.groups[kind].ids

    @functools.cached_property  # read per token while sampling and decoding
    def shift_offset(self) -> int:
        return self.groups[Kind.SHIFT].offset

    @functools.cached_property
    def pitch_offset(self) -> int:
        return self.groups[Kind.PITCH].offset

    @functools.cached_property
    def velocity_offset(self) -> int:
        return self.groups[Kind.VELOCITY].offset

    @functools.cached_property
    def duration_offset(self) -> int:
        return self.groups[Kind.DURATION].offset

    def __len__(self) -> int:
        last = self.groups[Kind.DURATION]
        return last.offset + len(last.labels)

    def shift_token(self, steps: int) -> int:
        return self.shift_offset + self.grid.index(steps)

    def pitch_token(self, pitch: int) -> int:
        return self.pitch_offset + pitch - self.config.pitch_low

    def duration_token(self, steps: int) -> int:
        return self.duration_offset + self.grid.index(steps)

    def names(self) -> list[str]:
        return [name for group in self.groups.values() for name in group.names()]

    @functools.cached_property
    def _kinds(self) -> np.ndarray:
        kinds = np.zeros(len(self), dtype=np.int8)
        for group in self.groups.values():
            kinds[group.ids] = group.kind
        return kinds

    def kinds(self) -> np.ndarray:
        """The ``Kind`` of every token id."""
        return self._kinds.copy()

    def to_dict(self) -> dict:
        config = asdict(self.config)
        config["beat_res"] = [list(r) for r in self.config.beat_res]  # as JSON reads it back
        return {"config": config, "size": len(self), "tokens": self.names()}

    @staticmethod
    def from_dict(data: dict) -> "Vocabulary":
        vocab = Vocabulary(TokenizerConfig.from_dict(data["config"]))
        if "tokens" in data and data["tokens"] != vocab.names():
            raise ValueError("vocabulary tokens do not match their configuration")
        return vocab


def greedy_split(steps: int, grid: Sequence[int]) -> list[int]:
    """Canonical decomposition of a time span into grid values, largest first."""
    parts = []
    while steps > 0:
        value = grid[bisect.bisect_right(grid, steps) - 1]
        parts.append(value)
        steps -= value
    return parts


def nearest_values(steps: np.ndarray, grid: Sequence[int], limits: np.ndarray) -> np.ndarray:
    """For each length in steps, the grid value closest to it (ties to the shorter) that is no
    larger than its limit (a limit under the smallest value allows that one; -1: no limit)."""
    values = np.asarray(grid)
    top = np.where(limits < 0, len(values), np.maximum(1, np.searchsorted(values, limits, side="right")))
    i = np.minimum(np.searchsorted(values, steps, side="left"), top)
    lower = values[np.maximum(i - 1, 0)]
    upper = values[np.minimum(i, len(values) - 1)]
    nearest = np.where((i == top) | (steps - lower <= upper - steps), lower, upper)
    return np.where(i == 0, values[0], nearest)


def velocity_bin(velocity: int, bins: int) -> int:
    return min(bins - 1, max(0, (velocity - 1) * bins // 127))


def bin_velocity(index: int, bins: int) -> int:
    return int(round(1 + (index + 0.5) * 127 / bins))


def fold_pitches(pitches: np.ndarray, config: TokenizerConfig) -> np.ndarray:
    """Bring pitches into the vocabulary's range by whole octaves: up to the lowest, then down
    from the highest."""
    low, high = config.pitch_low, config.pitch_high
    if not len(pitches) or low <= pitches.min() and pitches.max() <= high:
        return pitches
    pitches = np.where(pitches < low, pitches + 12 * ((low - pitches + 11) // 12), pitches)
    return np.where(pitches > high, pitches - 12 * ((pitches - high + 11) // 12), pitches)


def quantize(notes: Iterable[Note], vocab: Vocabulary) -> np.ndarray:
    """Notes → rows (onset step, pitch, duration step, velocity) on the grid, sorted, int64.

    Same-pitch notes at one onset merge (the longest wins; of equally long ones, the first);
    a pitch struck again while it sounds is cut short at the new onset, as a MIDI note-off
    would be. In arrays: a long piece has tens of thousands of notes.
    """
    columns = NoteColumns.of(notes)
    spq = vocab.config.steps_per_quarter
    onsets = np.maximum(0, np.rint(columns.starts * spq)).astype(np.int64)  # rint: halves to even, as round()
    pitches = fold_pitches(columns.pitches, vocab.config)
    lengths = columns.durations * spq
    velocities = columns.velocities
    order = np.lexsort((-lengths, pitches, onsets))  # stable: of equally long ones, the first
    onsets, pitches, lengths, velocities = onsets[order], pitches[order], lengths[order], velocities[order]
    first = np.ones(len(onsets), dtype=bool)
    first[1:] = (onsets[1:] != onsets[:-1]) | (pitches[1:] != pitches[:-1])
    onsets, pitches, lengths, velocities = onsets[first], pitches[first], lengths[first], velocities[first]
    by_pitch = np.lexsort((onsets, pitches))
    gaps = np.full(len(onsets), -1, dtype=np.int64)  # to the next onset of the same pitch; -1: none
    again = pitches[by_pitch[1:]] == pitches[by_pitch[:-1]]
    gaps[by_pitch[:-1][again]] = (onsets[by_pitch[1:]] - onsets[by_pitch[:-1]])[again]
    durations = nearest_values(lengths, vocab.grid, gaps)
    return np.stack([onsets, pitches, durations, velocities], axis=1).reshape(-1, 4)


def encode_notes(notes: Iterable[Note], vocab: Vocabulary) -> np.ndarray:
    """Notes → token ids (BOS … EOS), int32."""
    grid, bins = vocab.grid, vocab.config.velocity_bins
    events = quantize(notes, vocab)
    shifts = np.diff(events[:, 0], prepend=0).tolist()
    shift_tokens = {steps: [vocab.shift_token(v) for v in greedy_split(steps, grid)] for steps in set(shifts)}
    duration_tokens = {steps: vocab.duration_token(steps) for steps in set(events[:, 2].tolist())}
    velocities = events[:, 3].tolist()
    velocity_tokens = {v: vocab.velocity_offset + velocity_bin(v, bins) for v in set(velocities)} if bins else {}
    tokens = [BOS]
    for shift, pitch, duration, velocity in zip(shifts, vocab.pitch_token(events[:, 1]).tolist(), events[:, 2].tolist(), velocities):
        tokens.extend(shift_tokens[shift])
        tokens.append(pitch)
        if bins:
            tokens.append(velocity_tokens[velocity])
        tokens.append(duration_tokens[duration])
    tokens.append(EOS)
    return np.asarray(tokens, dtype=np.int32)


def decode_tokens(tokens: Iterable[int], vocab: Vocabulary) -> list[Note]:
    """Token ids → notes. Special tokens are skipped; a pitch without a duration is dropped."""
    grid, spq, bins = vocab.grid, vocab.config.steps_per_quarter, vocab.config.velocity_bins
    # plain ints and a list, read per token: numpy compares its scalars with an enum member
    # slowly (it probes the enum class for array protocols, each probe a failed look-up)
    kinds = vocab._kinds.tolist()
    shift, pitch_kind, velocity_kind, duration = int(Kind.SHIFT), int(Kind.PITCH), int(Kind.VELOCITY), int(Kind.DURATION)
    shift_offset, pitch_offset, velocity_offset, duration_offset = vocab.shift_offset, vocab.pitch_offset, vocab.velocity_offset, vocab.duration_offset
    pitch_low = vocab.config.pitch_low
    notes: list[Note] = []
    time = 0
    pitch: int | None = None
    velocity = DEFAULT_VELOCITY
    for token in tokens.tolist() if isinstance(tokens, np.ndarray) else tokens:
        token = int(token)
        kind = kinds[token]
        if token == EOS:
            break
        if kind == shift:
            time += grid[token - shift_offset]
            pitch = None
        elif kind == pitch_kind:
            pitch = token - pitch_offset + pitch_low
            velocity = DEFAULT_VELOCITY
        elif kind == velocity_kind:
            velocity = bin_velocity(token - velocity_offset, bins)
        elif kind == duration and pitch is not None:
            steps = grid[token - duration_offset]
            notes.append(Note(pitch, time / spq, steps / spq, velocity))
            pitch = None
    return notes


class Grammar:
    """Which tokens may follow a prefix. Feed tokens with ``advance``; ask ``allowed()``.

    The rules, which every encoded piece obeys and generation enforces as a mask:
    BOS first; a Pitch is followed by [Velocity] and a Duration; pitches at one onset ascend;
    a pitch that still sounds cannot be struck; consecutive TimeShifts are the greedy
    decomposition of their sum; EOS only after a complete note; nothing after EOS.
    With ``max_voices``, no pitch may be struck while that many notes already sound (a
    generation constraint, not part of the token grammar: corpora may exceed it).
    """

    def __init__(self, vocab: Vocabulary, max_voices: int | None = None):
        self.vocab = vocab
        self.max_voices = max_voices
        self.grid = vocab.grid
        self.kinds = vocab.kinds()
        self.started = False
        self.ended = False
        self.pending: str | None = None  # "pitch" or "velocity" while a note is incomplete
        self.time = 0
        self.run: list[int] = []  # trailing TimeShift values
        self.last_pitch = -1  # highest pitch at the current onset
        self.note_end = np.zeros(128, dtype=np.int64)
        self.pitch: int | None = None
        self.notes = 0

    def allowed(self) -> np.ndarray:
        v = self.vocab
        mask = np.zeros(len(v), dtype=bool)
        if not self.started:
            mask[BOS] = True
            return mask
        if self.ended:
            return mask
        if self.pending == "pitch" and v.config.velocity_bins:
            mask[v.ids(Kind.VELOCITY)] = True
            return mask
        if self.pending is not None:
            mask[v.ids(Kind.DURATION)] = True
            return mask
        mask[v.ids(Kind.SHIFT)] = self.shift_mask()
        if self.max_voices:
            mask[v.ids(Kind.SHIFT)] &= self.shifts_reaching_a_free_voice()
        pitches = np.arange(v.config.pitch_low, v.config.pitch_high + 1)
        if not self.max_voices or int((self.note_end > self.time).sum()) < self.max_voices:
            mask[v.ids(Kind.PITCH)] = (pitches > self.last_pitch) & (
                self.note_end[pitches] <= self.time
            )
        mask[EOS] = not self.run and self.notes > 0
        return mask

    def shifts_reaching_a_free_voice(self) -> np.ndarray:
        """For each shift: whether it, or a run of shifts it starts, reaches an onset where fewer
        than ``max_voices`` notes sound. Otherwise the voice ceiling could leave nothing to draw
        after it (a run of shifts must end in a note)."""
        ends = np.sort(self.note_end[self.note_end > self.time])
        grid = tuple(self.grid)
        if len(ends) < self.max_voices:
            return np.ones(len(grid), dtype=bool)  # fewer sound now, so fewer at every later onset
        targets = self.time + np.asarray(grid)
        result = len(ends) - np.searchsorted(ends, targets, side="right") < self.max_voices
        start = self.time - sum(self.run)  # the onset the current run of shifts started from
        for index in np.flatnonzero(~result):
            # every onset a run beginning with run + [value] can stop at, within the longest note
            totals = _run_totals(tuple(self.run) + (grid[index],), grid, int(ends[-1] - start))
            sounding = len(ends) - np.searchsorted(ends, start + totals, side="right")
            result[index] = bool((sounding < self.max_voices).any())
        return result

    def shift_mask(self) -> np.ndarray:
        return _next_shifts(tuple(self.run), tuple(self.grid))

    def advance(self, token: int) -> None:
        v = self.vocab
        token = int(token)
        kind = int(self.kinds[token])  # an int: a numpy scalar compared with a Kind is 40x slower
        if token == BOS:
            self.started = True
        elif token == EOS:
            self.ended = True
        elif kind == Kind.SHIFT:
            value = self.grid[token - v.shift_offset]
            self.run.append(value)
            self.time += value
            self.last_pitch = -1
        elif kind == Kind.PITCH:
            self.pitch = token - v.pitch_offset + v.config.pitch_low
            self.pending = "pitch"
            self.run = []
        elif kind == Kind.VELOCITY:
            self.pending = "velocity"
        elif kind == Kind.DURATION:
            assert self.pitch is not None
            self.note_end[self.pitch] = self.time + self.grid[token - v.duration_offset]
            self.last_pitch = self.pitch
            self.pending = None
            self.notes += 1


@functools.lru_cache(maxsize=65536)
def _run_totals(prefix: tuple[int, ...], grid: tuple[int, ...], limit: int) -> np.ndarray:
    """The totals T up to ``limit`` (or just the prefix's own, if it is already past) whose
    greedy decomposition starts with ``prefix``: the onsets a run of shifts can stop at."""
    base = sum(prefix)
    totals = [t for t in range(base, max(base, limit) + 1) if tuple(greedy_split(t, grid)[: len(prefix)]) == prefix]
    return np.array(totals, dtype=np.int64)


@functools.lru_cache(maxsize=4096)
def _next_shifts(run: tuple[int, ...], grid: tuple[int, ...]) -> np.ndarray:
    """Shift values that keep a run of shifts the greedy decomposition of its sum."""
    total = sum(run)
    return np.array([tuple(greedy_split(total + g, grid)[: len(run) + 1]) == run + (g,) for g in grid])


def allowed_next(prefix: Sequence[int], vocab: Vocabulary) -> np.ndarray:
    """Boolean mask over the vocabulary: the tokens that may follow ``prefix``."""
    grammar = Grammar(vocab)
    for token in prefix:
        grammar.advance(token)
    return grammar.allowed()


def is_grammatical(tokens: Sequence[int], vocab: Vocabulary) -> bool:
    grammar = Grammar(vocab)
    for token in tokens:
        if not grammar.allowed()[int(token)]:
            return False
        grammar.advance(token)
    return True


def count_notes(tokens: np.ndarray, vocab: Vocabulary) -> int:
    """Notes in a token array (one Duration token each)."""
    durations = vocab.ids(Kind.DURATION)
    tokens = np.asarray(tokens)
    return int(np.count_nonzero((tokens >= durations.start) & (tokens < durations.stop)))

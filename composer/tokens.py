"""Notes ⇄ tokens: the vocabulary, the beat grid and the grammar of a token stream.

One stream of events per piece (the vocabulary's table is ``token_groups``):

    BOS  [TimeShift]*  Pitch [Velocity] Duration  Pitch [Velocity] Duration ...  TimeShift ...  EOS

* Time is counted in grid *steps*; ``steps_per_quarter`` = 12 represents sixteenths (3 steps)
  and eighth-note triplets (4 steps) exactly.
* ``TimeShift`` and ``Duration`` take values from the same set: every step up to one quarter,
  then a coarser grid beyond (``beat_res``, as MidiTok's). A shift longer than the largest
  value is written as several shifts; the decomposition is greedy (largest first), which makes
  it canonical, so ``encode(decode(tokens)) == tokens`` for every grammatical stream.
* A note longer than the largest value is clamped to it by default (``long_notes="clamp"``);
  with ``long_notes="tie"`` it is written as tied Durations instead: the largest value as many
  times as it fits, then the rest (one grid value), e.g. ``Duration_8 Duration_8 Duration_3/2``
  for 17.5 quarters. A Duration right after a Duration of the largest value continues that
  note; only the largest value can be continued, which keeps the spelling canonical.
* Notes sharing an onset form a chord and are written in ascending pitch.
* A pitch cannot be struck again while it still sounds (the earlier note is shortened on
  encoding), which keeps every decoded stream writable as MIDI without loss.
* With ``instruments`` (opt-in), each note belongs to an instrument: one of the 16 General MIDI
  families or the drums (``INSTRUMENTS``). A ``Program`` token stands before a note whose
  instrument differs from the previous note's (MidiTok's ``use_programs`` with program changes
  only, in one stream); at an onset the instruments ascend, each with its pitches ascending.
  A drum is one ``Drum`` token (a GM percussion key, [Velocity]) with no Duration: it sounds
  ``DRUM_QUARTERS`` when decoded, cut at the next stroke of the same key.

Token names document themselves: ``TimeShift_1/4`` is a sixteenth, ``Duration_3/2`` a dotted
quarter, ``Pitch_60`` middle C, ``Velocity_3`` the fourth of ``velocity_bins`` bins.
"""

from __future__ import annotations

import bisect
import enum
import functools
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from typing import Iterable, Sequence

import numpy as np

from composer.config import choices, within

PAD, BOS, EOS = 0, 1, 2
DEFAULT_VELOCITY = 90
LONG_NOTES = ("clamp", "tie")
# TokenizerConfig fields written to vocab.json and run.json only when they differ from these
# defaults: vocabularies written before the field existed read, compare and hash the same
OPTIONAL_FIELDS = {"long_notes": "clamp", "instruments": False}
# a finer grid above 4 quarters, for music whose bars pass 4 quarters (9/8, 12/8, 3/2): every
# eighth up to 8 quarters; with ties, longer notes add a grid value to whole 8-quarter spans
FINE_BEAT_RES = ((0, 1, 12), (1, 4, 4), (4, 8, 2))
# with ties, a note spans at most this many of the largest value (32 quarters with the default
# grid: 8 bars of 4/4) and is clamped there: no tune holds a note longer, and a hung note of a
# broken file must not become thousands of tokens
MAX_TIED = 4

# General MIDI's 16 families of 8 programs each (program // 8), then the drums (channel 10), with
# the program each family is written back as: the family's usual member in General MIDI files
# (a judgement, not a count: no large GM corpus ships offline)
INSTRUMENTS: tuple[tuple[str, int], ...] = (
    ("Piano", 0), ("ChromaticPercussion", 11), ("Organ", 19), ("Guitar", 25), ("Bass", 33), ("Strings", 40),
    ("Ensemble", 48), ("Brass", 56), ("Reed", 65), ("Pipe", 73), ("SynthLead", 81), ("SynthPad", 89),
    ("SynthEffects", 99), ("Ethnic", 105), ("Percussive", 115), ("SoundEffects", 122), ("Drums", 0),
)
DRUMS = len(INSTRUMENTS) - 1  # the drums' instrument index
DRUM_KEYS = range(35, 82)  # General MIDI level 1 percussion: Acoustic Bass Drum ... Open Triangle
DRUM_QUARTERS = 0.25  # a decoded drum stroke's length: drums have no meaningful duration


def pitched(notes: Iterable[Note]) -> list[Note]:
    """The notes that have a pitch: all but the drums (which scores and pitch measures leave out)."""
    return [n for n in notes if not n.drum]


def instrument_of(program: int, drum: bool) -> int:
    """A note's instrument index: its General MIDI family, or DRUMS."""
    return DRUMS if drum else program // 8


@dataclass(frozen=True)
class Note:
    """One sounding note; times in quarter notes from the start of the piece."""

    pitch: int
    start: float
    duration: float
    velocity: int = DEFAULT_VELOCITY
    program: int = 0  # General MIDI program, 0-127 (kept when tokenizing with ``instruments``)
    drum: bool = False  # a percussion note (MIDI channel 10): ``pitch`` is its GM drum key


@dataclass(frozen=True, eq=False)
class NoteColumns(Sequence[Note]):
    """Notes as arrays, one entry per note: what a reader builds from a parser's arrays and
    what encoding, silences and the key work on, so that tokenizing a file makes no Note at all.
    Still a sequence of Notes (built on first use) equal to the list of the same notes."""

    pitches: np.ndarray  # int64
    starts: np.ndarray  # float64, quarters
    durations: np.ndarray  # float64, quarters
    velocities: np.ndarray  # int64
    programs: np.ndarray | None = None  # int64; None: all 0
    drums: np.ndarray | None = None  # bool; None: none

    def __post_init__(self):
        # filled here rather than by every reader that keeps no instruments
        if self.programs is None:
            object.__setattr__(self, "programs", np.zeros(len(self.pitches), np.int64))
        if self.drums is None:
            object.__setattr__(self, "drums", np.zeros(len(self.pitches), bool))

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
            np.fromiter((n.program for n in notes), np.int64, len(notes)),
            np.fromiter((n.drum for n in notes), bool, len(notes)),
        )

    def where(self, mask: np.ndarray) -> "NoteColumns":
        """The notes for which ``mask`` holds, every column kept."""
        return NoteColumns(*(a[mask] for a in (self.pitches, self.starts, self.durations, self.velocities, self.programs, self.drums)))

    @functools.cached_property
    def notes(self) -> list[Note]:
        # filled through __dict__ at half the cost of Note() (a frozen dataclass sets every field
        # through object.__setattr__); each equals, hashes and prints as Note(...) would
        new, made = object.__new__, []
        columns = (
            self.pitches.tolist(), self.starts.tolist(), self.durations.tolist(), self.velocities.tolist(),
            self.programs.tolist(), self.drums.tolist(),
        )
        for pitch, start, duration, velocity, program, drum in zip(*columns):
            note = new(Note)
            note.__dict__.update(pitch=pitch, start=start, duration=duration, velocity=velocity, program=program, drum=drum)
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
    # notes longer than the grid's largest value: "clamp" to it, or "tie" Durations (module docstring)
    long_notes: str = field(default="clamp", metadata=choices(*LONG_NOTES))
    # Program and Drum tokens (``INSTRUMENTS``); off: every non-drum note in one piano stream
    instruments: bool = False

    @property
    def ties(self) -> bool:
        return self.long_notes == "tie"

    def problem(self) -> str | None:
        """Why this configuration cannot tokenize music (None when it can)."""
        if self.instruments and self.ties:
            # an instrument stream is encoded with one Duration per note; ties would need several
            return "instruments and tied long notes do not combine yet"
        return None

    def options(self) -> str:
        """The ``composer tokenize`` options that make this configuration ("" for the defaults),
        so a run says how its corpus must be tokenized (other grids and ranges are library-only)."""
        chosen = ["--instruments"] * self.instruments + ["--fine-durations"] * (self.beat_res == FINE_BEAT_RES)
        chosen += ["--tie-long-notes"] * self.ties + [f"--velocity-bins {self.velocity_bins}"] * (self.velocity_bins > 0)
        return " ".join(chosen)

    @staticmethod
    def from_dict(data: dict) -> "TokenizerConfig":
        data = dict(data)
        data["beat_res"] = tuple(tuple(r) for r in data["beat_res"])
        return TokenizerConfig(**data)

    def to_dict(self) -> dict:
        """As JSON writes it; the ``OPTIONAL_FIELDS`` only when they differ from their defaults, so
        that vocab.json, run.json, corpus hashes and cache keys made before them stay as they were."""
        data = {k: v for k, v in asdict(self).items() if k not in OPTIONAL_FIELDS or v != OPTIONAL_FIELDS[k]}
        data["beat_res"] = [list(r) for r in self.beat_res]  # as JSON reads it back
        return data


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
    PROGRAM = 5  # after the groups of vocabularies without instruments: their ids stay as they were
    DRUM = 6


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
    program  Program      with ``instruments``: 16 GM families + drums Program_Strings
    drum     Drum         with ``instruments``: GM drum keys 35-81     Drum_38: snare
    ======== ============ ============================================ =====================

    A Program token is written back as its family's program in ``INSTRUMENTS``: Piano 0,
    ChromaticPercussion 11, Organ 19, Guitar 25, Bass 33, Strings 40, Ensemble 48, Brass 56,
    Reed 65, Pipe 73, SynthLead 81, SynthPad 89, SynthEffects 99, Ethnic 105, Percussive 115,
    SoundEffects 122; Program_Drums as the drum kit on channel 10.
    """
    spq = config.steps_per_quarter
    times = tuple(str(Fraction(v, spq)) for v in grid_values(config))
    rows = [
        (Kind.SPECIAL, "", ("PAD", "BOS", "EOS")),
        (Kind.SHIFT, "TimeShift", times),
        (Kind.PITCH, "Pitch", tuple(str(p) for p in range(config.pitch_low, config.pitch_high + 1))),
        (Kind.VELOCITY, "Velocity", tuple(str(i) for i in range(config.velocity_bins))),
        (Kind.DURATION, "Duration", times),
        (Kind.PROGRAM, "Program", tuple(name for name, _ in INSTRUMENTS) if config.instruments else ()),
        (Kind.DRUM, "Drum", tuple(str(k) for k in DRUM_KEYS) if config.instruments else ()),
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

    @functools.cached_property
    def program_offset(self) -> int:
        return self.groups[Kind.PROGRAM].offset

    @functools.cached_property
    def drum_offset(self) -> int:
        return self.groups[Kind.DRUM].offset

    @functools.cached_property
    def instruments(self) -> int:
        """Rows of the grammar's sounding table: one per instrument, or one piano stream."""
        return len(INSTRUMENTS) if self.config.instruments else 1

    @functools.cached_property  # read per token while sampling
    def size(self) -> int:
        return max(group.offset + len(group.labels) for group in self.groups.values())

    def __len__(self) -> int:
        return self.size

    def shift_token(self, steps: int) -> int:
        return self.shift_offset + self.grid.index(steps)

    def pitch_token(self, pitch: int) -> int:
        return self.pitch_offset + pitch - self.config.pitch_low

    def duration_token(self, steps: int) -> int:
        return self.duration_offset + self.grid.index(steps)

    def duration_tokens(self, steps: int) -> list[int]:
        """The Duration token of a note (tied ones, with ``long_notes="tie"``)."""
        return [self.duration_token(v) for v in tie_split(steps, self.grid[-1])]

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
        return {"config": self.config.to_dict(), "size": len(self), "tokens": self.names()}

    @staticmethod
    def from_dict(data: dict) -> "Vocabulary":
        vocab = Vocabulary(TokenizerConfig.from_dict(data["config"]))
        if "tokens" in data and data["tokens"] != vocab.names():
            raise ValueError("vocabulary tokens do not match their configuration")
        return vocab


@functools.lru_cache(maxsize=16)
def vocabulary(config: TokenizerConfig) -> Vocabulary:
    """The Vocabulary of a configuration, built once per process: tokenizing reads its tables for
    every file, and building them (names, offsets, kinds) cost a tenth of a chorale's tokenizing."""
    return Vocabulary(config)


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


def tie_split(steps: int, top: int) -> list[int]:
    """A note's length as tied values: ``top`` for each whole span but the last, then the rest
    (a length of at most ``top`` is one value)."""
    spans = max(0, -(-steps // top) - 1)
    return [top] * spans + [steps - spans * top]


def tied_values(steps: np.ndarray, grid: Sequence[int], limits: np.ndarray) -> np.ndarray:
    """``nearest_values`` for tied durations: the nearest length that whole spans of the
    largest value and then one grid value spell (at most ``MAX_TIED`` spans), no larger than
    its limit (-1: no limit)."""
    top = grid[-1]
    capped = np.minimum(np.where(limits < 0, steps, np.minimum(steps, limits)), MAX_TIED * top)
    spans = np.maximum(0, np.ceil(capped / top) - 1).astype(np.int64)
    rest = capped - spans * top
    rest_limits = np.where(limits < 0, -1, limits - spans * top)
    values = nearest_values(rest, grid, rest_limits)
    # after whole spans, adding nothing is a choice too: the nearer one, or the only one that fits
    nothing = (spans > 0) & ((2 * rest <= grid[0]) | ((rest_limits >= 0) & (rest_limits < grid[0])))
    return spans * top + np.where(nothing, 0, values)


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
    """Notes → rows (onset step, pitch, duration step, velocity, instrument) on the grid, sorted
    by onset, instrument and pitch, int64. The instrument is 0 without ``instruments``, where
    drums are dropped.

    Same-pitch notes of one instrument at one onset merge (the longest wins; of equally long
    ones, the first); a pitch struck again in its instrument while it sounds is cut short at the
    new onset, as a MIDI note-off would be. Drums keep their key (those outside ``DRUM_KEYS``
    are dropped) and a duration of 0 (none is tokenized). In arrays: a long piece has tens of
    thousands of notes.
    """
    columns = NoteColumns.of(notes)
    spq = vocab.config.steps_per_quarter
    if vocab.config.instruments:
        drums = columns.drums
        kept = ~drums | ((columns.pitches >= DRUM_KEYS.start) & (columns.pitches < DRUM_KEYS.stop))
        instruments = np.where(drums, DRUMS, columns.programs // 8)[kept]
        drums = drums[kept]
        columns = columns.where(kept)
        pitches = np.where(drums, columns.pitches, fold_pitches(columns.pitches, vocab.config))
    else:
        if columns.drums.any():
            columns = columns.where(~columns.drums)
        instruments = drums = np.zeros(len(columns), np.int64)
        pitches = fold_pitches(columns.pitches, vocab.config)
    onsets = np.maximum(0, np.rint(columns.starts * spq)).astype(np.int64)  # rint: halves to even, as round()
    lengths = columns.durations * spq
    velocities = columns.velocities
    order = np.lexsort((-lengths, pitches, instruments, onsets))  # stable: of equally long ones, the first
    onsets, pitches, lengths, velocities, instruments, drums = (
        a[order] for a in (onsets, pitches, lengths, velocities, instruments, drums)
    )
    first = np.ones(len(onsets), dtype=bool)
    first[1:] = (onsets[1:] != onsets[:-1]) | (pitches[1:] != pitches[:-1]) | (instruments[1:] != instruments[:-1])
    onsets, pitches, lengths, velocities, instruments, drums = (
        a[first] for a in (onsets, pitches, lengths, velocities, instruments, drums)
    )
    by_pitch = np.lexsort((onsets, pitches, instruments))
    gaps = np.full(len(onsets), -1, dtype=np.int64)  # to the next onset of the same pitch; -1: none
    again = (pitches[by_pitch[1:]] == pitches[by_pitch[:-1]]) & (instruments[by_pitch[1:]] == instruments[by_pitch[:-1]])
    gaps[by_pitch[:-1][again]] = (onsets[by_pitch[1:]] - onsets[by_pitch[:-1]])[again]
    durations = np.where(drums, 0, (tied_values if vocab.config.ties else nearest_values)(lengths, vocab.grid, gaps))
    return np.stack([onsets, pitches, durations, velocities, instruments], axis=1).reshape(-1, 5)


def encode_notes(notes: Iterable[Note], vocab: Vocabulary) -> np.ndarray:
    """Notes → token ids (BOS … EOS), int32."""
    grid, bins = vocab.grid, vocab.config.velocity_bins
    events = quantize(notes, vocab)
    shifts = np.diff(events[:, 0], prepend=0).tolist()
    shift_tokens = {steps: [vocab.shift_token(v) for v in greedy_split(steps, grid)] for steps in set(shifts)}
    duration_tokens = {steps: vocab.duration_tokens(steps) for steps in set(events[:, 2].tolist()) if steps}  # 0: a drum's
    velocities = events[:, 3].tolist()
    velocity_tokens = {v: vocab.velocity_offset + velocity_bin(v, bins) for v in set(velocities)} if bins else {}
    if vocab.config.instruments:
        return _encode_instruments(events, vocab, shifts, shift_tokens, velocity_tokens)
    tokens = [BOS]
    for shift, pitch, duration, velocity in zip(shifts, vocab.pitch_token(events[:, 1]).tolist(), events[:, 2].tolist(), velocities):
        tokens.extend(shift_tokens[shift])
        tokens.append(pitch)
        if bins:
            tokens.append(velocity_tokens[velocity])
        tokens.extend(duration_tokens[duration])
    tokens.append(EOS)
    return np.asarray(tokens, dtype=np.int32)


def _encode_instruments(events: np.ndarray, vocab: Vocabulary, shifts: list[int], shift_tokens: dict, velocity_tokens: dict) -> np.ndarray:
    """``encode_notes`` with instruments: a Program token wherever the instrument changes, drums
    as Drum tokens without a Duration. In arrays (each event's tokens placed at its offset):
    band music has more tokens per note, and a loop over them was half of tokenizing."""
    instruments, durations = events[:, 4], events[:, 2]
    drums = instruments == DRUMS
    values, inverse = np.unique(np.asarray(shifts, dtype=np.int64), return_inverse=True)
    runs = [shift_tokens[v] for v in values.tolist()]
    table = np.zeros((len(runs), max(map(len, runs), default=0) or 1), np.int64)
    for row, run in enumerate(runs):
        table[row, : len(run)] = run
    shift_count = np.array([len(run) for run in runs], np.int64)[inverse] if len(runs) else np.zeros(0, np.int64)
    program = instruments != np.concatenate([[-1], instruments[:-1]])
    bins = 1 if velocity_tokens else 0
    lengths = shift_count + program + 1 + bins + ~drums
    ends = 1 + np.cumsum(lengths)  # after BOS
    starts = ends - lengths
    tokens = np.empty(int(ends[-1]) + 1 if len(ends) else 2, np.int64)
    tokens[0], tokens[-1] = BOS, EOS
    owner = np.repeat(np.arange(len(events)), shift_count)
    within = np.arange(len(owner)) - np.repeat(np.cumsum(shift_count) - shift_count, shift_count)
    tokens[starts[owner] + within] = table[inverse[owner], within]
    tokens[(starts + shift_count)[program]] = vocab.program_offset + instruments[program]
    at = starts + shift_count + program
    tokens[at] = np.where(drums, vocab.drum_offset + events[:, 1] - DRUM_KEYS.start, vocab.pitch_token(events[:, 1]))
    if bins:
        tokens[at + 1] = [velocity_tokens[v] for v in events[:, 3].tolist()]
    tokens[(at + 1 + bins)[~drums]] = vocab.duration_offset + np.searchsorted(vocab.grid, durations[~drums])
    return tokens.astype(np.int32)


def decode_tokens(tokens: Iterable[int], vocab: Vocabulary) -> list[Note]:
    """Token ids → notes. Special tokens are skipped; a pitch without a duration is dropped."""
    grid, spq, bins = vocab.grid, vocab.config.steps_per_quarter, vocab.config.velocity_bins
    top = grid[-1] if vocab.config.ties else None  # the value a tie continues
    # plain ints and a list, read per token: numpy compares its scalars with an enum member
    # slowly (it probes the enum class for array protocols, each probe a failed look-up)
    kinds = vocab._kinds.tolist()
    shift, pitch_kind, velocity_kind, duration = int(Kind.SHIFT), int(Kind.PITCH), int(Kind.VELOCITY), int(Kind.DURATION)
    program_kind, drum_kind = int(Kind.PROGRAM), int(Kind.DRUM)
    shift_offset, pitch_offset, velocity_offset, duration_offset = vocab.shift_offset, vocab.pitch_offset, vocab.velocity_offset, vocab.duration_offset
    pitch_low = vocab.config.pitch_low
    notes: list[Note] = []
    time = 0
    pitch: int | None = None
    velocity = DEFAULT_VELOCITY
    tied, held = 0, 0  # as Grammar.tied; the steps the last note holds so far
    program, drum = 0, False
    strokes: dict[int, int] = {}  # drum key → index of its last stroke in notes
    for token in tokens.tolist() if isinstance(tokens, np.ndarray) else tokens:
        token = int(token)
        kind = kinds[token]
        if token == EOS:
            break
        if kind == duration and ((pitch is not None and not drum) or 0 < tied < MAX_TIED):
            steps = grid[token - duration_offset]
            if pitch is not None:
                tied, held = 0, steps
                notes.append(Note(pitch, time / spq, steps / spq, velocity, program))
            else:  # a tie: the last note goes on
                held += steps
                notes[-1] = replace(notes[-1], duration=held / spq)
            tied = tied + 1 if steps == top else 0
            pitch = None
            continue
        tied = 0
        if kind == shift:
            time += grid[token - shift_offset]
            pitch = None
        elif kind == pitch_kind and not drum:
            pitch = token - pitch_offset + pitch_low
            velocity = DEFAULT_VELOCITY
        elif kind == velocity_kind and pitch is not None:
            velocity = bin_velocity(token - velocity_offset, bins)
            if drum:
                notes[-1] = replace(notes[-1], velocity=velocity)
                pitch = None
        elif kind == program_kind:
            instrument = token - vocab.program_offset
            program, drum, pitch = INSTRUMENTS[instrument][1], instrument == DRUMS, None
        elif kind == drum_kind and drum:
            pitch = token - vocab.drum_offset + DRUM_KEYS.start
            start = time / spq
            if pitch in strokes and notes[strokes[pitch]].start + DRUM_QUARTERS > start:
                # a stroke sounds until the next one of its key: no two overlap when written as MIDI
                earlier = notes[strokes[pitch]]
                notes[strokes[pitch]] = replace(earlier, duration=start - earlier.start)
            strokes[pitch] = len(notes)
            notes.append(Note(pitch, start, DRUM_QUARTERS, DEFAULT_VELOCITY, 0, True))
            pitch = pitch if bins else None  # with velocity bins, its Velocity follows
    return notes


class Grammar:
    """Which tokens may follow a prefix. Feed tokens with ``advance``; ask ``allowed()``.

    The rules, which every encoded piece obeys and generation enforces as a mask:
    BOS first; a Pitch is followed by [Velocity] and a Duration; pitches at one onset ascend;
    a pitch that still sounds cannot be struck; consecutive TimeShifts are the greedy
    decomposition of their sum; EOS only after a complete note; nothing after EOS. With
    ties, a Duration may follow a Duration of the largest value (up to ``MAX_TIED`` of them).
    With instruments: a Program first, then before a note only where the instrument changes,
    and to a higher one within an onset; pitches ascend and sound per instrument; a Program is
    followed by a note of its instrument (a Drum [Velocity] for the drums, which ascend too).
    With ``max_voices``, no note may be struck while that many notes already sound, over all
    instruments, drums included (a generation constraint, not part of the token grammar:
    corpora may exceed it).
    """

    def __init__(self, vocab: Vocabulary, max_voices: int | None = None):
        self.vocab = vocab
        self.max_voices = max_voices
        self.grid = vocab.grid
        self.kinds = vocab.kinds()
        self.started = False
        self.ended = False
        # "program", "pitch", "velocity" (of a pitch) or "drum" (awaiting its velocity) while a note is incomplete
        self.pending: str | None = None
        self.time = 0
        self.run: list[int] = []  # trailing TimeShift values
        self.last_pitch = -1  # highest pitch (or drum key) of the current instrument at the current onset
        self.note_end = np.zeros((vocab.instruments, 128), dtype=np.int64)  # per instrument and pitch
        self.pitch: int | None = None
        self.notes = 0
        self.tied = 0  # largest-value Durations ending the stream: the last note may go on while 0 < tied < MAX_TIED
        self.instrument = -1 if vocab.config.instruments else 0  # the previous note's; -1: none yet
        self.onset_instrument = -1  # the instrument of the last note at the current onset; -1: none
        self.drum_steps = max(1, round(DRUM_QUARTERS * vocab.config.steps_per_quarter))

    def allowed(self) -> np.ndarray:
        v = self.vocab
        mask = np.zeros(len(v), dtype=bool)
        if not self.started:
            mask[BOS] = True
            return mask
        if self.ended:
            return mask
        if self.pending in ("pitch", "drum") and v.config.velocity_bins:
            mask[v.ids(Kind.VELOCITY)] = True
            return mask
        if self.pending == "program":
            mask[v.ids(Kind.DRUM if self.instrument == DRUMS else Kind.PITCH)] = self.note_mask(self.instrument)
            return mask
        if self.pending is not None:
            mask[v.ids(Kind.DURATION)] = True
            return mask
        mask[v.ids(Kind.SHIFT)] = self.shift_mask()
        mask[v.ids(Kind.DURATION)] = 0 < self.tied < MAX_TIED
        if self.max_voices:
            mask[v.ids(Kind.SHIFT)] &= self.shifts_reaching_a_free_voice()
        if not self.max_voices or int((self.note_end > self.time).sum()) < self.max_voices:
            if self.instrument >= 0:
                mask[v.ids(Kind.DRUM if self.instrument == DRUMS else Kind.PITCH)] = self.note_mask(self.instrument)
            if v.config.instruments:
                mask[v.ids(Kind.PROGRAM)] = self.program_mask()
        mask[EOS] = not self.run and self.notes > 0
        return mask

    def note_mask(self, instrument: int) -> np.ndarray:
        """The pitches (drum keys for the drums) that ``instrument`` may strike now: above its
        last at this onset, and for pitches, not still sounding."""
        if instrument == DRUMS:
            return np.arange(DRUM_KEYS.start, DRUM_KEYS.stop) > self.last_pitch
        pitches = np.arange(self.vocab.config.pitch_low, self.vocab.config.pitch_high + 1)
        last = self.last_pitch if instrument == self.instrument else -1
        return (pitches > last) & (self.note_end[instrument, pitches] <= self.time)

    def program_mask(self) -> np.ndarray:
        """Instruments a Program may switch to: another than the previous note's, higher than
        this onset's last, and with a note left to strike."""
        instruments = np.arange(len(INSTRUMENTS))
        low, high = self.vocab.config.pitch_low, self.vocab.config.pitch_high
        # another instrument has not played at this onset, so any pitch of it that is silent is free
        free = np.append((self.note_end[:DRUMS, low : high + 1] <= self.time).any(axis=1), True)
        return (instruments != self.instrument) & (instruments > self.onset_instrument) & free

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
        tied, self.tied = self.tied, 0
        if token == BOS:
            self.started = True
        elif token == EOS:
            self.ended = True
        elif kind == Kind.SHIFT:
            value = self.grid[token - v.shift_offset]
            self.run.append(value)
            self.time += value
            self.last_pitch = -1
            self.onset_instrument = -1
        elif kind == Kind.PROGRAM:
            self.instrument = self.onset_instrument = token - v.program_offset
            self.last_pitch = -1
            self.pending = "program"
            self.run = []
        elif kind == Kind.PITCH:
            self.pitch = token - v.pitch_offset + v.config.pitch_low
            self.pending = "pitch"
            self.run = []
            self.onset_instrument = self.instrument
        elif kind == Kind.DRUM:
            self.pitch = token - v.drum_offset + DRUM_KEYS.start
            self.run = []
            self.onset_instrument = self.instrument
            self.pending = "drum"
            if not v.config.velocity_bins:
                self._complete(self.drum_steps)
        elif kind == Kind.VELOCITY:
            if self.pending == "drum":
                self._complete(self.drum_steps)
            else:
                self.pending = "velocity"
        elif kind == Kind.DURATION:
            value = self.grid[token - v.duration_offset]
            if self.pending is None:  # a tie: the last note goes on
                self.note_end[self.instrument, self.pitch] += value
            else:
                self._complete(value)
            self.tied = tied + 1 if v.config.ties and value == self.grid[-1] else 0

    def _complete(self, steps: int) -> None:
        assert self.pitch is not None
        self.note_end[self.instrument, self.pitch] = self.time + steps
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


def is_grammatical(tokens: Sequence[int], vocab: Vocabulary) -> bool:
    grammar = Grammar(vocab)
    for token in tokens:
        if not grammar.allowed()[int(token)]:
            return False
        grammar.advance(token)
    return True


def count_notes(tokens: np.ndarray, vocab: Vocabulary) -> int:
    """Notes in a token array: one Duration token each (not counting the Durations of a tie), or one Drum token."""
    tokens = np.asarray(tokens)
    durations, drums = vocab.ids(Kind.DURATION), vocab.ids(Kind.DRUM)
    is_duration = (tokens >= durations.start) & (tokens < durations.stop)
    if vocab.config.ties:
        is_duration[1:] &= ~is_duration[:-1]
    return int(np.count_nonzero(is_duration)) + int(np.count_nonzero((tokens >= drums.start) & (tokens < drums.stop)))

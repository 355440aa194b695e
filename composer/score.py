"""Reading a piece as a score: voices, MusicXML for notation software, engraved SVG excerpts,
and the voice-leading measures a score shows at a glance.

* ``assign_voices`` gives every note a voice: soprano/alto/tenor/bass for chorale-like
  textures (at most 4 notes sounding most of the time), otherwise right hand / left hand of a
  grand staff. Every note is kept exactly once.
* ``write_musicxml`` lays the voices out on two staves (treble: the upper voices, bass: the
  lower), with key signature, metre, tempo, pitches spelled in the key, accidentals as an
  engraver writes them (``accidentals_needed``) and ties across barlines. Music of several
  instruments gets a part per instrument (``instrument_parts``): one staff each, two for a
  piano; drums are left out (the page's piano roll shows them).
  ``accidental_errors`` re-reads any MusicXML file and counts accidentals shown in vain or missing.
* ``render_excerpt_svg`` engraves a window of the piece with verovio, primer notes in grey.
* ``voice_leading`` counts parallel fifths and octaves, voice crossings and notes outside each
  voice's usual range (``voice_ranges`` learns the ranges from real chorales).

Times are in quarter notes, as everywhere else (``composer.tokens.Note``); the score grid is
12 steps per quarter, the tokenizer's, so sixteenths and eighth-note triplets are exact.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from composer.corpus import estimate_key
from composer.metre import Change, bars as metre_bars
from composer.storage import atomic_path
from composer.tokens import INSTRUMENTS, Note, instrument_of, pitched

STEPS_PER_QUARTER = 12

SATB = ("soprano", "alto", "tenor", "bass")
HANDS = ("right hand", "left hand")
CHORALE, GRAND_STAFF = "chorale", "grand staff"

# Where a voice that has not sung yet is expected: the middle of its usual range.
_VOICE_CENTRES = (70, 64, 57, 50)
# Costs in semitones of motion: a crossing must buy back two octaves of leaps before it is
# preferred, and doubling a voice (two notes at once) or striking over a held note is a last resort.
_CROSSING_COST = 24.0
_DOUBLING_COST = 40.0
_HELD_COST = 40.0
_MAX_SEARCHED_CHORD = 8  # larger chords are cut into four registers without a search

# Textbook SATB ranges (C4-G5, G3-D5, C3-G4, E2-C4); ``voice_ranges`` measures a corpus instead.
DEFAULT_RANGES: tuple[tuple[int, int], ...] = ((60, 79), (55, 74), (48, 67), (40, 60))

PRIMER_COLOUR = "#9A9A9A"
_EPS = 1e-6


@dataclass(frozen=True)
class Voices:
    """The voice of every note of a piece (``of_note[i]`` for ``notes[i]``, input order)."""

    texture: str  # CHORALE or GRAND_STAFF
    names: tuple[str, ...]  # one per voice, highest first
    staff_of_voice: tuple[int, ...]  # 0 treble, 1 bass
    of_note: tuple[int, ...]

    def notes_of(self, notes: Sequence[Note], voice: int) -> list[Note]:
        return [n for n, v in zip(notes, self.of_note) if v == voice]


# ---- voices -------------------------------------------------------------------------------

def _steps(quarters: float) -> int:
    return int(round(quarters * STEPS_PER_QUARTER))


def _onset_groups(notes: Sequence[Note]) -> list[tuple[int, list[int]]]:
    """(onset step, note indices sounding from there) in time order."""
    groups: dict[int, list[int]] = {}
    for i, note in enumerate(notes):
        groups.setdefault(_steps(note.start), []).append(i)
    return sorted(groups.items())


def sounding_counts(notes: Sequence[Note]) -> np.ndarray:
    """Notes sounding at each distinct onset (new and held), in time order."""
    if not notes:
        return np.zeros(0, dtype=int)
    starts = np.array([_steps(n.start) for n in notes])
    ends = starts + np.maximum(1, np.array([_steps(n.duration) for n in notes]))
    onsets = np.unique(starts)
    begun = np.searchsorted(np.sort(starts), onsets, side="right")
    ended = np.searchsorted(np.sort(ends), onsets, side="right")
    return begun - ended


def is_chorale_texture(notes: Sequence[Note], max_voices: int = 4, share: float = 0.9) -> bool:
    """At most ``max_voices`` notes sounding at ``share`` of the onsets or more."""
    counts = sounding_counts(notes)
    return bool(len(counts)) and float(np.mean(counts <= max_voices)) >= share


def assign_voices(notes: Sequence[Note], texture: str = "auto") -> Voices:
    """Assign each note to a voice: SATB with voice-leading continuity, or a grand-staff split.

    ``texture`` is "auto" (chorale when at most 4 notes sound at 90 % of onsets), CHORALE or
    GRAND_STAFF. A chorale voice takes, at each onset, the new note nearest its last pitch, with
    voices kept in pitch order unless a held note forces a crossing; a fifth note at one onset
    doubles the voice where it costs least. The grand staff splits each chord around middle C,
    keeping a chord in one hand when the split would part close notes.
    """
    if texture == "auto":
        texture = CHORALE if is_chorale_texture(notes) else GRAND_STAFF
    if texture == CHORALE:
        return Voices(CHORALE, SATB, (0, 0, 1, 1), tuple(_assign_satb(notes)))
    if texture == GRAND_STAFF:
        return Voices(GRAND_STAFF, HANDS, (0, 1), tuple(_assign_hands(notes)))
    raise ValueError(f"unknown texture {texture!r}: use 'auto', {CHORALE!r} or {GRAND_STAFF!r}")


def _assign_satb(notes: Sequence[Note]) -> list[int]:
    voices = len(SATB)
    last = list(_VOICE_CENTRES)  # last pitch sung by each voice
    busy_until = [-1] * voices  # step when its current note ends
    sounding = [0] * voices  # pitch of that note
    result = [0] * len(notes)
    for onset, members in _onset_groups(notes):
        members = sorted(members, key=lambda i: -notes[i].pitch)  # highest first, as voices
        pitches = [notes[i].pitch for i in members]
        held = [busy_until[v] > onset for v in range(voices)]
        if len(members) > _MAX_SEARCHED_CHORD:
            # a cluster no choir sings: cut it into four registers
            choice = tuple(min(voices - 1, k * voices // len(members)) for k in range(len(members)))
        else:
            choice = min(
                itertools.combinations_with_replacement(range(voices), len(members)),
                key=lambda c: _satb_cost(c, pitches, last, held, sounding),
            )
        for i, v in zip(members, choice):
            result[i] = v
        for v in set(choice):
            mine = [p for p, c in zip(pitches, choice) if c == v]
            last[v] = sounding[v] = mine[0] if v < 2 else mine[-1]  # the outer note of a doubled voice
            ends = [_steps(notes[i].start + notes[i].duration) for i, c in zip(members, choice) if c == v]
            busy_until[v] = max(max(ends), busy_until[v])
    return result


def _satb_cost(choice: tuple[int, ...], pitches: list[int], last: list[int], held: list[bool], sounding: list[int]) -> float:
    """Motion from each voice's last pitch, plus penalties for crossing, doubling and striking
    over a held note. ``choice`` gives the voice of each new pitch (highest first)."""
    cost = 0.0
    now = {v: sounding[v] for v in range(len(last)) if held[v]}  # pitch of each sounding voice
    struck: set[int] = set()
    for pitch, v in zip(pitches, choice):
        cost += abs(pitch - last[v])
        if v in struck:
            cost += _DOUBLING_COST
        else:
            if held[v]:
                cost += _HELD_COST
            now[v] = pitch  # a voice's line follows its new note (the highest if doubled)
            struck.add(v)
    ordered = sorted(now)
    for a, b in itertools.pairwise(ordered):
        if now[a] < now[b]:
            cost += _CROSSING_COST
    return cost


def _assign_hands(notes: Sequence[Note]) -> list[int]:
    result = [0] * len(notes)
    for _, members in _onset_groups(notes):
        members = sorted(members, key=lambda i: notes[i].pitch)  # lowest first
        pitches = [notes[i].pitch for i in members]
        best = min(range(len(pitches) + 1), key=lambda split: _hands_cost(pitches, split))
        for k, i in enumerate(members):
            result[i] = 1 if k < best else 0
    return result


def _hands_cost(pitches: list[int], split: int) -> float:
    """pitches[:split] to the left hand, the rest to the right."""
    left, right = pitches[:split], pitches[split:]
    cost = sum(max(0, 60 - p) for p in right) + sum(max(0, p - 59) for p in left)
    for hand in (left, right):
        if hand:
            cost += 2 * max(0, hand[-1] - hand[0] - 14)  # wider than a hand reaches
    if left and right:
        cost += 3 * max(0, 6 - (right[0] - left[-1]))  # parting notes a hand would take together
    return cost


# ---- measures a score shows ---------------------------------------------------------------

@dataclass(frozen=True)
class VoiceLeading:
    """Voice-leading faults of one piece read as four voices, as counts and as rates.

    Parallels are counted per *pair move*: a pair of voices both taking a new pitch at the same
    onset, the only place a parallel can happen. Per note, a texture where voices seldom move
    together (an untrained model's, with its long held notes) would look cleaner than Bach.
    Rates are NaN where there is nothing to count.
    """

    notes: int
    onsets: int
    pair_moves: int  # voice pairs both moving to a new pitch between consecutive onsets
    fifths: int  # pair moves from a perfect fifth (or compound) to a perfect fifth, same direction
    octaves: int  # the same for octaves and unisons
    crossed_onsets: int  # onsets where a lower voice sounds above a higher one
    out_of_range: int  # notes outside their voice's usual range

    @property
    def parallel_fifths_per_100(self) -> float:
        return 100 * self.fifths / self.pair_moves if self.pair_moves else float("nan")

    @property
    def parallel_octaves_per_100(self) -> float:
        return 100 * self.octaves / self.pair_moves if self.pair_moves else float("nan")

    @property
    def crossing_share(self) -> float:
        return self.crossed_onsets / self.onsets if self.onsets else float("nan")

    @property
    def out_of_range_share(self) -> float:
        return self.out_of_range / self.notes if self.notes else float("nan")

    def rates(self) -> dict[str, float]:
        """The four rates by name, for a metrics table."""
        return {name: getattr(self, name) for name in VOICE_LEADING_RATES}

    def __add__(self, other: "VoiceLeading") -> "VoiceLeading":
        """Pooled counts of two pieces: rates over a set of samples weigh every note alike."""
        return VoiceLeading(*(a + b for a, b in zip(_counts(self), _counts(other))))


VOICE_LEADING_RATES = ("parallel_fifths_per_100", "parallel_octaves_per_100", "crossing_share", "out_of_range_share")


def _counts(measure: VoiceLeading) -> tuple[int, ...]:
    return (measure.notes, measure.onsets, measure.pair_moves, measure.fifths, measure.octaves, measure.crossed_onsets, measure.out_of_range)


def voice_lines(notes: Sequence[Note], voices: Voices) -> tuple[np.ndarray, np.ndarray]:
    """(onset steps, pitch of each voice at each onset; -1 where silent).

    Where a voice holds two notes at once, its line is the most recently struck one, and at a
    common onset the outer one (top for the upper voices, bottom for the lower): what an ear follows.
    """
    onsets = np.array(sorted({_steps(n.start) for n in notes}), dtype=int)
    count = len(voices.names)
    lines = -np.ones((count, len(onsets)), dtype=int)
    upper = count // 2

    def order(i: int) -> tuple[int, int]:
        # written later wins: ascending pitch leaves the top note for upper voices, descending the bottom
        pitch = notes[i].pitch
        return _steps(notes[i].start), pitch if voices.of_note[i] < upper else -pitch

    for i in sorted(range(len(notes)), key=order):
        start = _steps(notes[i].start)
        a, b = np.searchsorted(onsets, [start, start + max(1, _steps(notes[i].duration))])
        lines[voices.of_note[i], a:b] = notes[i].pitch
    return onsets, lines


def voice_leading(
    notes: Sequence[Note], ranges: Sequence[tuple[int, int]] = DEFAULT_RANGES, voices: Voices | None = None
) -> VoiceLeading:
    """Parallel fifths/octaves, crossings and range faults of a piece read as SATB.

    The piece is always read as four voices (``assign_voices(notes, CHORALE)`` unless ``voices``
    is given), since these are the faults a chorale is judged by; a grand-staff layout would
    hide them inside chords. Voices are read in pitch order, so a crossing Bach wrote on
    purpose (tenor above alto) reads as the score shows it, uncrossed.
    """
    if not notes:
        return VoiceLeading(0, 0, 0, 0, 0, 0, 0)
    voices = voices or assign_voices(notes, CHORALE)
    _, lines = voice_lines(notes, voices)
    pair_moves = fifths = octaves = 0
    crossed = np.zeros(lines.shape[1], dtype=bool)
    for upper, lower in itertools.combinations(range(len(voices.names)), 2):
        a, b = lines[upper], lines[lower]
        both = (a >= 0) & (b >= 0)
        moved = both[:-1] & both[1:] & (a[:-1] != a[1:]) & (b[:-1] != b[1:])
        similar = moved & (np.sign(a[1:] - a[:-1]) == np.sign(b[1:] - b[:-1]))
        interval = np.abs(a - b) % 12
        pair_moves += int(np.sum(moved))
        fifths += int(np.sum(similar & (interval[:-1] == 7) & (interval[1:] == 7)))
        octaves += int(np.sum(similar & (interval[:-1] == 0) & (interval[1:] == 0)))
        crossed |= both & (a < b)
    outside = sum(
        1 for note, v in zip(notes, voices.of_note) if v < len(ranges) and not ranges[v][0] <= note.pitch <= ranges[v][1]
    )
    return VoiceLeading(len(notes), lines.shape[1], pair_moves, fifths, octaves, int(np.sum(crossed)), outside)


def voice_ranges(pieces: Iterable[Sequence[Note]], low: float = 1, high: float = 99) -> tuple[tuple[int, int], ...]:
    """Each SATB voice's usual range over real pieces: its ``low``-th to ``high``-th percentile pitch."""
    per_voice: list[list[int]] = [[] for _ in SATB]
    for notes in map(pitched, pieces):
        voices = assign_voices(notes, CHORALE)
        for note, v in zip(notes, voices.of_note):
            per_voice[v].append(note.pitch)
    ranges = []
    for v, pitches in enumerate(per_voice):
        if not pitches:
            ranges.append(DEFAULT_RANGES[v])
        else:
            lo, hi = np.percentile(pitches, [low, high])
            ranges.append((int(np.floor(lo)), int(np.ceil(hi))))
    return tuple(ranges)


# ---- the score ---------------------------------------------------------------------------

# Note values a notation program writes without a tie, in steps: whole ... sixteenth, then triplets.
_PLAIN_VALUES = (48, 36, 24, 18, 12, 9, 6, 3)
_TRIPLET_VALUES = (16, 8, 4, 2, 1)


def bar_steps(time_signature: str) -> int:
    numerator, denominator = (int(x) for x in time_signature.split("/"))
    return numerator * 4 * STEPS_PER_QUARTER // denominator


def _written_values(start: int, length: int) -> list[int]:
    """A span split into tied note values a musician reads: plain values on the sixteenth grid,
    triplet values only to reach it again or for a span made of triplets."""
    values: list[int] = []
    position, left = start, length
    while left > 0:
        off_grid = (-position) % 3  # steps a triplet value must cover to regain the sixteenth grid
        if off_grid:
            fitting = [v for v in _TRIPLET_VALUES if v <= left and v % 3 == off_grid]
            value = fitting[0] if fitting else next(v for v in _TRIPLET_VALUES if v <= left)
        elif left % 3 and left % 4 == 0:
            value = next(v for v in _TRIPLET_VALUES if v <= left)  # a run of triplet eighths or quarters
        elif left >= 3:
            value = next(v for v in _PLAIN_VALUES if v <= left - left % 3)
        else:
            value = left  # 1 or 2 steps: a triplet 32nd or sixteenth
        values.append(value)
        position += value
        left -= value
    return values


@dataclass(frozen=True)
class _Chord:
    start: int  # steps
    length: int
    pitches: tuple[int, ...]
    primer: bool


def _layers(notes: Sequence[Note], primer_end: float | None) -> list[list[_Chord]]:
    """One voice's notes as layers of chords that never overlap (a notation voice cannot hold two
    notes of different lengths at once); the first layer is the voice proper."""
    chords: dict[tuple[int, int], list[set[int]]] = {}
    for note in notes:
        same_span = chords.setdefault((_steps(note.start), max(1, _steps(note.duration))), [])
        # a unison of two parts sharing a voice is two notes: the second goes to a chord of its own
        chord = next((c for c in same_span if note.pitch not in c), None)
        if chord is None:
            same_span.append(chord := set())
        chord.add(int(note.pitch))
    layers: list[list[_Chord]] = []
    ends: list[int] = []
    spans = sorted(((span, pitches) for span, sets in chords.items() for pitches in sets), key=lambda sp: (sp[0][0], -sp[0][1]))
    for (start, length), pitches in spans:
        primer = primer_end is not None and start < _steps(primer_end)
        chord = _Chord(start, length, tuple(sorted(pitches)), primer)
        for k, end in enumerate(ends):
            if end <= start:
                layers[k].append(chord)
                ends[k] = start + length
                break
        else:
            layers.append([chord])
            ends.append(start + length)
    return layers


def _key(name: str):
    import music21

    if not name:
        return music21.key.Key("C")
    tonic, mode = name.split()
    return music21.key.Key(tonic if mode == "major" else tonic.lower())


# The other five pitch classes of a key, as intervals above its tonic, each spelled as Bach spells
# it most often (music21's 400 Bach chorales, key estimated from their notes as here: 98 % of
# chromatic notes as he wrote them, against 86 % for "sharps in sharp keys, flats in flat keys").
# Major: raised 1st, 4th and 5th (leading tones of ii, V, vi), flat 3rd and 7th (mixture, V of IV);
# minor: the raised 6th and 7th of melodic and harmonic minor, the Neapolitan flat 2nd, the
# Picardy major 3rd and the raised 4th (leading tone of V).
_CHROMATIC_INTERVALS = {"major": ("A1", "m3", "A4", "A5", "m7"), "minor": ("M6", "M7", "m2", "M3", "A4")}


def _speller(key) -> dict[int, str]:
    """Pitch class -> spelled name in ``key``: scale notes as the scale spells them, the other
    five as ``_CHROMATIC_INTERVALS`` says."""
    names = {p.pitchClass: p.name for p in key.getScale().getPitches()}
    for interval in _CHROMATIC_INTERVALS[key.mode]:
        chromatic = key.tonic.transpose(interval)
        names.setdefault(chromatic.pitchClass, chromatic.name)
    return names


def _pitch(midi: int, spelling: dict[int, str]):
    import music21

    pitch = music21.pitch.Pitch(spelling[midi % 12])
    # the octave follows the written letter: B#3 sounds as C4, C-5 as B4
    pitch.octave = 4
    pitch.octave = 4 + (midi - int(pitch.midi)) // 12
    return pitch


# ---- accidentals --------------------------------------------------------------------------

_SHARP_ORDER = "FCGDAEB"  # the order a key signature adds sharps; flats come in reverse


def key_alters(fifths: int) -> dict[str, int]:
    """Step -> alteration the key signature of ``fifths`` (sharps > 0, flats < 0) gives it."""
    sharps, flats = _SHARP_ORDER[: max(0, fifths)], _SHARP_ORDER[::-1][: max(0, -fifths)]
    return {step: 1 if step in sharps else -1 if step in flats else 0 for step in _SHARP_ORDER}


@dataclass(frozen=True)
class WrittenNote:
    """One notehead of one staff and bar, as the accidental rule sees it."""

    onset: Fraction  # from the barline; only the order matters
    step: str
    octave: int
    alter: int
    tied_over: bool  # continues a note tied from before: it never shows an accidental


def accidentals_needed(bar: Sequence[WrittenNote], alters: dict[str, int]) -> list[bool]:
    """Whether each note of one staff's bar must show an accidental, as engravers write them.

    A note shows one where its alteration differs from what its step and octave carry at that
    moment: the key signature's, or the last accidental on that step and octave earlier in the
    bar (in any voice of the staff). A barline restores the key signature. A note tied over
    shows none; where it departs from what the bar carries (a sharp tied into a new bar), the next
    note on its step and octave shows its accidental whatever it is: the sharp again, or the
    natural that cancels it, as MuseScore does. So does the next note after two alterations of
    one step and octave struck together (both show theirs): the reader cannot tell which holds.
    """
    unsure = None  # what a step and octave carries when the reader cannot know
    carried: dict[tuple[str, int], int | None] = {}
    needed = [False] * len(bar)
    order = sorted(range(len(bar)), key=lambda i: bar[i].onset)
    for _, group in itertools.groupby(order, key=lambda i: bar[i].onset):
        group = list(group)
        at_once: dict[tuple[str, int], set[int]] = {}
        for i in group:
            if not bar[i].tied_over:
                at_once.setdefault((bar[i].step, bar[i].octave), set()).add(bar[i].alter)
        for i in group:
            place = (bar[i].step, bar[i].octave)
            departs = carried.get(place, alters[bar[i].step]) != bar[i].alter
            needed[i] = not bar[i].tied_over and (departs or len(at_once[place]) > 1)
        for place, kinds in at_once.items():
            carried[place] = next(iter(kinds)) if len(kinds) == 1 else unsure
        for i in group:
            place = (bar[i].step, bar[i].octave)
            if bar[i].tied_over and carried.get(place, alters[bar[i].step]) != bar[i].alter:
                carried[place] = unsure
    return needed


def _show_accidentals(measure, alters: dict[str, int]) -> None:
    """Set every note's accidental display in one staff's bar. music21's ``makeAccidentals``
    is not used: it walks a bar's voices one after another rather than in time order, so a late
    note of the first voice would decide an earlier note of the second."""
    import music21

    heads = [
        (element, pitch)
        for voice in measure.voices
        for element in voice.notes
        for pitch in element.pitches
    ]
    bar = [
        WrittenNote(
            Fraction(element.offset),
            pitch.step,
            int(pitch.octave),
            int(round(pitch.alter)),
            element.tie is not None and element.tie.type != "start",
        )
        for element, pitch in heads
    ]
    for (element, pitch), needed in zip(heads, accidentals_needed(bar, alters)):
        # a tied natural is written as one (<alter>0</alter>) even where none is shown: music21
        # joins a tie's middle part only to an identical pitch, and takes a shown natural and
        # no accidental for two pitches
        if pitch.accidental is None and (needed or element.tie is not None):
            pitch.accidental = music21.pitch.Accidental("natural")
        if pitch.accidental is not None:
            pitch.accidental.displayStatus = needed


@dataclass(frozen=True)
class AccidentalErrors:
    """Engraving faults of a MusicXML score, read against its key signatures bar by bar."""

    redundant: int  # accidentals shown where the key signature or the bar already says so
    missing: int  # notes whose alteration the reader would not know (or is shown wrongly)

    @property
    def total(self) -> int:
        return self.redundant + self.missing


_ACCIDENTAL_ALTERS = {"natural": 0, "sharp": 1, "flat": -1, "double-sharp": 2, "sharp-sharp": 2, "flat-flat": -2}


def accidental_errors(musicxml: bytes) -> AccidentalErrors:
    """Re-read a MusicXML file and count accidentals shown where none is due and notes whose
    alteration is not shown where one is (by ``accidentals_needed``, staff by staff)."""
    import xml.etree.ElementTree as ET

    redundant = missing = 0
    for part in ET.fromstring(musicxml).iter("part"):
        alters: dict[str, dict[str, int]] = {}  # staff -> its key signature; "" for all staves
        for measure in part.iter("measure"):
            for key in measure.iter("key"):
                alters[key.get("number", "")] = key_alters(int(key.findtext("fifths", "0")))
            for staff, heads in _staff_heads(measure).items():
                bar = [written for written, _ in heads]
                staff_alters = alters.get(staff) or alters.get("", key_alters(0))
                for (written, shown), needed in zip(heads, accidentals_needed(bar, staff_alters)):
                    if shown is not None and not needed:
                        redundant += 1
                    elif needed and shown != written.alter:
                        missing += 1
    return AccidentalErrors(redundant, missing)


def _staff_heads(measure) -> dict[str, list[tuple[WrittenNote, int | None]]]:
    """A MusicXML bar's pitched notes by staff: (note, alteration its accidental shows or None),
    onsets counted through <backup>, <forward> and <chord/>."""
    heads: dict[str, list[tuple[WrittenNote, int | None]]] = {}
    position = onset = 0
    for element in measure:
        duration = int(element.findtext("duration", "0"))
        if element.tag == "backup":
            position -= duration
        elif element.tag == "forward":
            position += duration
        elif element.tag == "note":
            if element.find("chord") is None:
                onset = position
                position += 0 if element.find("grace") is not None else duration
            pitch = element.find("pitch")
            if pitch is None:
                continue  # a rest
            accidental = element.findtext("accidental")
            written = WrittenNote(
                Fraction(onset),
                pitch.findtext("step"),
                int(pitch.findtext("octave")),
                int(round(float(pitch.findtext("alter", "0")))),
                any(tie.get("type") == "stop" for tie in element.iter("tie")),
            )
            shown = None if accidental is None else _ACCIDENTAL_ALTERS.get(accidental.strip())
            heads.setdefault(element.findtext("staff", "1"), []).append((written, shown))
    return heads


def build_score(
    notes: Sequence[Note],
    key: str = "",
    time_signature: str = "4/4",
    bpm: float = 120.0,
    primer_end: float | None = None,
    title: str = "",
    voices: Voices | None = None,
    first_bar: int = 1,
    part_name: str | None = None,
    time_signatures: Sequence[Change] | None = None,
):
    """The music21 Score of a piece: one brace of two staves, voices laid out as ``assign_voices``
    says, split at barlines with ties; primer notes (onset before ``primer_end``) coloured grey.
    ``time_signatures``, the metre's changes as (quarter, "n/d"), replaces ``time_signature``:
    bar lines follow them (``metre.bars``), each new metre shown where it starts.

    ``key`` ("G major", "F# minor"; "" for C major) is the one key signature of every bar and
    the key every pitch is spelled in, whatever the notes suggest: scores that must agree (the
    openings of one comparison page) pass the same key.
    """
    import music21
    from music21 import stream

    voices = voices or assign_voices(notes)
    music_key = _key(key)
    spelling = _speller(music_key)
    alters = key_alters(music_key.sharps)
    changes = list(time_signatures or [(0.0, time_signature)])
    end = max((_steps(n.start) + max(1, _steps(n.duration)) for n in notes), default=bar_steps(changes[0][1]))
    # (start, length, metre) of every bar, in steps
    measures = [
        (_steps(start), _steps(length), metre) for start, length, metre in metre_bars(changes, end / STEPS_PER_QUARTER)
        if _steps(length) > 0  # a change within a step of a bar line: no bar of nothing
    ]

    score = stream.Score()
    if title:
        score.insert(0, music21.metadata.Metadata(title=title))
    staves = []
    voice_number = 0  # MusicXML voice numbers run on across the staves of one part
    used = sorted(set(voices.staff_of_voice))
    for staff in used:
        part = stream.PartStaff() if len(used) > 1 else stream.Part()
        part.partName = part_name if part_name is not None else ("Chorale" if voices.texture == CHORALE else "Piano")
        staff_voices = [v for v, s in enumerate(voices.staff_of_voice) if s == staff]
        # (stem, rests shown, chords): a voice's own layer shows its rests; the layers that only
        # hold its overlapping notes hide theirs, as notation programs do for an extra voice
        layers: list[tuple[str | None, bool, list[_Chord]]] = []
        for rank, v in enumerate(staff_voices):
            own = _layers(voices.notes_of(notes, v), primer_end) or [[]]
            for k, chords in enumerate(own):
                if len(staff_voices) > 1:
                    stem = "up" if rank == 0 else "down"
                else:
                    stem = None if len(own) == 1 else ("up" if k == 0 else "down")
                layers.append((stem, k == 0, chords))
        for number, (bar_start, bar, metre) in enumerate(measures):
            measure = stream.Measure(number=first_bar + number)
            if number == 0:
                measure.insert(0, music21.clef.TrebleClef() if staff == 0 else music21.clef.BassClef())
                measure.insert(0, music21.key.KeySignature(music_key.sharps))
                if staff == used[0] and bpm:
                    measure.insert(0, music21.tempo.MetronomeMark(number=round(bpm, 1), referent=1.0))
            if number == 0 or metre != measures[number - 1][2]:
                measure.insert(0, music21.meter.TimeSignature(metre))
            for k, (stem, rests_shown, chords) in enumerate(layers):
                # every layer in every bar, even as hidden rests: readers such as music21 pair a
                # bar's voices with the next bar's by position, and a missing one breaks the ties
                voice = stream.Voice(id=str(voice_number + k + 1))
                _fill_bar(voice, chords, bar_start, bar, beat_steps(metre), spelling, stem, hidden_rests=not rests_shown)
                measure.insert(0, voice)
            _show_accidentals(measure, alters)
            part.append(measure)
        voice_number += len(layers)
        staves.append(part)
    for part in staves:
        score.insert(0, part)
    if len(staves) > 1:
        score.insert(0, music21.layout.StaffGroup(staves, symbol="brace", barTogether=True))
    return score


# General MIDI families in the order of a conductor's score: woodwinds, brass, synthesizers,
# tuned percussion, keyboards, guitars, voices and ensembles, strings, and the bass at the bottom
SCORE_ORDER = (
    "Pipe", "Reed", "Brass", "SynthLead", "SynthPad", "SynthEffects", "ChromaticPercussion", "Percussive",
    "Piano", "Organ", "Guitar", "Ethnic", "Ensemble", "Strings", "Bass", "SoundEffects",
)


def instrument_parts(notes: Sequence[Note]) -> list[tuple[str, list[int], Voices]]:
    """The pitched notes of each instrument (its GM family; drums left out), in a conductor's
    score order (``SCORE_ORDER``: the same for every sample of a page), as (name, indices into
    ``notes``, voices): a piano's on a grand staff, any other's on one staff, treble or bass by
    its median pitch, its overlapping notes in layers."""
    groups: dict[int, list[int]] = {}
    for i, note in enumerate(notes):
        if not note.drum:
            groups.setdefault(instrument_of(note.program, note.drum), []).append(i)
    parts = []
    for instrument in sorted(groups, key=lambda i: SCORE_ORDER.index(INSTRUMENTS[i][0])):
        members = groups[instrument]
        own = [notes[i] for i in members]
        if instrument == 0:
            voices = assign_voices(own, GRAND_STAFF)
        else:
            staff = 0 if np.median([n.pitch for n in own]) >= 60 else 1
            voices = Voices(GRAND_STAFF, (INSTRUMENTS[instrument][0],), (staff,), (0,) * len(own))
        parts.append((INSTRUMENTS[instrument][0], members, voices))
    return parts


def build_band_score(notes: Sequence[Note], key: str = "", time_signature: str = "4/4", bpm: float = 120.0,
                     primer_end: float | None = None, title: str = "", parts=None, first_bar: int = 1,
                     time_signatures: Sequence[Change] | None = None):
    """``build_score`` of music of several instruments: one part per instrument
    (``instrument_parts``, or ``parts`` chosen on a whole piece), all in one key and metre, the tempo on the first."""
    import music21
    from music21 import stream

    score = stream.Score()
    if title:
        score.insert(0, music21.metadata.Metadata(title=title))
    for k, (name, members, voices) in enumerate(parts or instrument_parts(notes)):
        own = build_score([notes[i] for i in members], key, time_signature, bpm if k == 0 else 0.0, primer_end,
                          voices=voices, first_bar=first_bar, part_name=name, time_signatures=time_signatures)
        for element in list(own):
            score.insert(0, element)
    return score


def several_instruments(notes: Sequence[Note]) -> bool:
    return len({instrument_of(n.program, n.drum) for n in notes if not n.drum}) > 1


def _in_bar(chord: _Chord, bar_start: int, bar: int) -> bool:
    return chord.start < bar_start + bar and chord.start + chord.length > bar_start


def _fill_bar(
    voice, layer: list[_Chord], bar_start: int, bar: int, beat: int, spelling: dict[int, str], stem: str | None, hidden_rests: bool
) -> None:
    import music21

    bar_end = bar_start + bar
    position = bar_start

    def rest(start: int, length: int) -> None:
        at = start
        for value in _written_values(start, length):
            r = music21.note.Rest(quarterLength=Fraction(value, STEPS_PER_QUARTER))
            r.fullMeasure = value == bar  # said here: music21 would search the context for each rest
            if hidden_rests:
                r.style.hideObjectOnPrint = True
            voice.insert(Fraction(at - bar_start, STEPS_PER_QUARTER), r)
            at += value

    for chord in layer:
        chord_end = chord.start + chord.length
        if not _in_bar(chord, bar_start, bar):
            continue
        start, stop = max(chord.start, bar_start), min(chord_end, bar_end)
        if start > position:
            rest(position, start - position)
        at = start
        values = _written_values(start, stop - start)
        for k, value in enumerate(values):
            pitches = [_pitch(p, spelling) for p in chord.pitches]
            element = music21.chord.Chord(pitches) if len(pitches) > 1 else music21.note.Note(pitches[0])
            element.quarterLength = Fraction(value, STEPS_PER_QUARTER)
            if stem:
                element.stemDirection = stem
            first = at == chord.start
            last = at + value == chord_end
            if not (first and last):
                element.tie = music21.tie.Tie("start" if first else "stop" if last else "continue")
            if chord.primer:
                element.style.color = PRIMER_COLOUR
            voice.insert(Fraction(at - bar_start, STEPS_PER_QUARTER), element)
            at += value
        position = stop
    if position < bar_end:
        rest(position, bar_end - position)
    _beam(voice, beat)


# Beams per note value in steps: eighth and triplet eighth 1, sixteenth and its triplet 2, 32nd triplet 3.
_BEAMS = {9: 1, 6: 1, 4: 1, 3: 2, 2: 2, 1: 3}


def _beam(voice, beat: int) -> None:
    """Beam the notes shorter than a quarter within each beat, as a copyist would (music21's
    makeBeams does the same but looks up its context for every note: most of the export time)."""
    runs: list[list[tuple[object, int]]] = []
    current_beat = None
    for element in voice.notesAndRests:
        steps = int(round(float(element.quarterLength) * STEPS_PER_QUARTER))
        at = int(round(float(element.offset) * STEPS_PER_QUARTER))
        if element.isRest or steps not in _BEAMS:
            current_beat = None  # a rest or a longer note breaks the beam
            continue
        if at // beat != current_beat:
            runs.append([])
            current_beat = at // beat
        runs[-1].append((element, _BEAMS[steps]))
    for run in runs:
        if len(run) > 1:
            _beam_run(run)


def _beam_run(run: list[tuple[object, int]]) -> None:
    import music21

    for k, (element, count) in enumerate(run):
        beams = music21.beam.Beams()
        for level in range(1, count + 1):
            before = k > 0 and run[k - 1][1] >= level
            after = k + 1 < len(run) and run[k + 1][1] >= level
            if before or after:
                kind, direction = ("continue" if after else "stop") if before else "start", None
            else:
                kind, direction = "partial", "left" if k else "right"
            beams.append(music21.beam.Beam(type=kind, direction=direction, number=level))
        element.beams = beams


def beat_steps(time_signature: str) -> int:
    """Steps in one beat, the span a beam may cover: a dotted quarter in compound metres."""
    numerator, denominator = (int(x) for x in time_signature.split("/"))
    if denominator == 8 and numerator % 3 == 0:
        return 18
    return 4 * STEPS_PER_QUARTER // denominator if denominator <= 4 else STEPS_PER_QUARTER


def musicxml_bytes(score) -> bytes:
    """A score from ``build_score`` as MusicXML, with parts named P1, P2, ... in score order (not
    music21's random ids, so that the same piece always gives the same file) and without the
    placeholder title and composer music21 writes into an untitled, uncredited score."""
    from music21 import defaults
    from music21.musicxml.m21ToXml import ScoreExporter

    # makeNotation=False: measures, ties, note values and accidentals are already laid out here
    exporter = ScoreExporter(score, makeNotation=False)
    root = exporter.parse()
    ids = {part.get("id"): f"P{k + 1}" for k, part in enumerate(root.iter("score-part"))}
    for element in (*root.iter("score-part"), *root.iter("part")):
        element.set("id", ids[element.get("id")])
    for parent in (root, *root.iter("identification")):
        for child in list(parent):
            if child.tag in ("movement-title", "creator") and child.text in (defaults.title, defaults.author):
                parent.remove(child)
    return exporter.asBytes()


def write_musicxml(
    notes: Sequence[Note],
    path: Path,
    key: str | None = None,
    time_signature: str = "4/4",
    bpm: float = 120.0,
    primer_end: float | None = None,
    title: str = "",
    time_signatures: Sequence[Change] | None = None,
) -> Path:
    """Write a piece as MusicXML (two staves, voices, key, metre, tempo, ties), atomically.

    ``key`` is a name such as "G major" (``corpus.estimate_key(notes)`` when None);
    primer notes, those starting before ``primer_end`` quarters, are coloured grey;
    ``time_signatures`` as in ``build_score``. Drums are left out: they have no pitch to
    engrave (the page's piano roll shows them).
    """
    notes = pitched(notes)
    if key is None:
        key = estimate_key(list(notes))
    build = build_band_score if several_instruments(notes) else build_score
    score = build(notes, key, time_signature, bpm, primer_end, title or Path(path).stem, time_signatures=time_signatures)
    data = musicxml_bytes(score)
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def staves_in(svg: Path) -> int:
    """Staves of an engraved excerpt: the most that verovio drew in one measure (a part that
    ends early leaves its staff out of the last ones)."""
    measures = svg.read_text(encoding="utf-8").split('class="measure"')[1:]
    return max([m.count('class="staff"') for m in measures] + [1])


def excerpt_window(primer_end: float, time_signature: str = "4/4", bars_after: int = 4) -> tuple[float, float]:
    """(start, end) in quarters of the excerpt a page shows: the bar holding the primer's last
    note and ``bars_after`` bars after the primer."""
    bar = bar_steps(time_signature) / STEPS_PER_QUARTER
    last_bar = max(0.0, (np.ceil(primer_end / bar - _EPS) - 1) * bar)
    return float(last_bar), float(primer_end + bars_after * bar)


def excerpt_notes(notes: Sequence[Note], start: float, end: float) -> list[Note]:
    """The notes sounding in [start, end), cut to it and moved to start at 0."""
    return [
        Note(n.pitch, max(n.start, start) - start, min(n.start + n.duration, end) - max(n.start, start), n.velocity, n.program, n.drum)
        for n in notes
        if _overlaps(n, start, end)
    ]


def render_excerpt_svg(
    notes: Sequence[Note],
    path: Path,
    start_quarter: float,
    end_quarter: float,
    primer_end: float | None = None,
    key: str | None = None,
    time_signature: str = "4/4",
    bpm: float = 120.0,
    width: int = 1400,
    scale: int = 35,
) -> Path:
    """Engrave the notes in [start_quarter, end_quarter) as a standalone SVG, atomically.

    Voices and staves are chosen on the whole piece, so the excerpt reads as the full score
    does; primer notes (onset before ``primer_end``, in the piece's quarters) are grey. The key
    is estimated from the whole piece when None; a key given ("G major") is used exactly, as in
    ``build_score``, so that excerpts which must agree can share one. ``start_quarter`` should
    fall on a barline (``excerpt_window`` gives one) so that bars are counted from there.
    """
    import verovio

    notes = pitched(notes)  # drums: piano roll only, as in write_musicxml
    if key is None:
        key = estimate_key(list(notes))
    primer = None if primer_end is None else primer_end - start_quarter
    bar = bar_steps(time_signature) / STEPS_PER_QUARTER
    first_bar = int(np.floor(start_quarter / bar + _EPS)) + 1
    if several_instruments(notes):
        # parts and voices of the whole piece, so the excerpt reads as the full score does
        inside = [i for i, n in enumerate(notes) if _overlaps(n, start_quarter, end_quarter)]
        cut = excerpt_notes([notes[i] for i in inside], start_quarter, end_quarter)
        position = {i: k for k, i in enumerate(inside)}
        parts = []
        for name, members, whole in instrument_parts(notes):
            kept = [(position[i], v) for i, v in zip(members, whole.of_note) if i in position]
            if kept:
                parts.append((name, [k for k, _ in kept], Voices(whole.texture, whole.names, whole.staff_of_voice, tuple(v for _, v in kept))))
        score = build_band_score(cut, key, time_signature, bpm, primer, parts=parts, first_bar=first_bar)
    else:
        whole = assign_voices(notes)  # voices of the whole piece: the excerpt reads as the full score does
        kept = [(n, v) for n, v in zip(notes, whole.of_note) if _overlaps(n, start_quarter, end_quarter)]
        cut = excerpt_notes([n for n, _ in kept], start_quarter, end_quarter)
        voices = Voices(whole.texture, whole.names, whole.staff_of_voice, tuple(v for _, v in kept))
        score = build_score(cut, key, time_signature, bpm, primer, voices=voices, first_bar=first_bar, part_name="")
    toolkit = verovio.toolkit()
    toolkit.setOptions(
        {
            "pageWidth": width,
            "scale": scale,
            "adjustPageHeight": True,
            "breaks": "none",  # one system: the excerpt reads left to right like the piano roll
            "header": "none",
            "footer": "none",
            "svgViewBox": True,  # scales with the page's CSS
        }
    )
    if not toolkit.loadData(musicxml_bytes(score).decode("utf-8")):
        raise RuntimeError("verovio could not read the excerpt's MusicXML")
    svg = toolkit.renderToSVG(1)
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(svg)
    return Path(path)


def _overlaps(note: Note, start: float, end: float) -> bool:
    return min(note.start + note.duration, end) - max(note.start, start) > _EPS

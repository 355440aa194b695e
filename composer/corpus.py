"""Reading music files into notes, screening out bad files, writing MIDI, exporting music21 collections.

Every reader returns a ``Piece``: one polyphonic list of notes (all non-drum tracks merged,
times in quarter notes) plus the metadata that is not tokenized (tempo, time signature, key).
A file that cannot be used raises ``UnusableFile`` with a one-line reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from composer import ComposerError
from composer.storage import atomic_path
from composer.tokens import Note

MIDI_SUFFIXES = {".mid", ".midi"}
MUSIC21_SUFFIXES = {".xml", ".mxl", ".musicxml", ".abc", ".krn"}
SUFFIXES = MIDI_SUFFIXES | MUSIC21_SUFFIXES
DEFAULT_MAX_BYTES = 10_000_000
TEMPO_RANGE = (10.0, 1000.0)  # beats per minute


class UnusableFile(Exception):
    """A file that is skipped, with the reason as its message."""


@dataclass
class Piece:
    notes: list[Note]
    tempo: float = 120.0
    time_signature: str = "4/4"
    key: str = ""
    meta: dict = field(default_factory=dict)


def find_music_files(sources: list[Path]) -> list[Path]:
    """Every readable music file under the given files and folders, sorted, recursively."""
    found: set[Path] = set()
    for source in sources:
        if not source.exists():
            raise ComposerError(f"{source}: no such file or folder")
        if source.is_file():
            found.add(source)
        else:
            found.update(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    return sorted(found)


def read_piece(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Piece:
    """Read one file into a Piece or raise UnusableFile saying why."""
    size = path.stat().st_size
    if size == 0:
        raise UnusableFile("empty file")
    if size > max_bytes:
        raise UnusableFile(f"{size / 1e6:.3g} MB is over the {max_bytes / 1e6:g} MB size limit")
    suffix = path.suffix.lower()
    if suffix in MIDI_SUFFIXES:
        piece = read_midi(path)
    elif suffix in MUSIC21_SUFFIXES:
        piece = read_music21(path)
    else:
        raise UnusableFile(f"unknown file type {suffix!r}")
    if not piece.notes:
        raise UnusableFile("no notes")
    return piece


def read_midi(path: Path) -> Piece:
    import mido

    with open(path, "rb") as f:
        header = f.read(14)
    if header[:4] != b"MThd":
        raise UnusableFile("not a MIDI file (no MThd header)")
    if len(header) < 14:
        raise UnusableFile("damaged MIDI file (header cut short)")
    # checked before mido, which fails on these with unrelated messages or not at all
    division = int.from_bytes(header[12:14], "big", signed=True)
    if division < 0:
        raise UnusableFile("SMPTE time-code resolution (frames per second) is not supported")
    if division == 0:
        raise UnusableFile("absurd resolution of 0 ticks per quarter")
    try:
        midi = mido.MidiFile(str(path))
    except Exception as error:  # mido raises many types for damaged files
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UnusableFile(f"damaged MIDI file ({reason})") from None
    notes, drums, tempi, signatures = _midi_events(midi)
    if tempi and not all(TEMPO_RANGE[0] <= t <= TEMPO_RANGE[1] for t in tempi):
        raise UnusableFile(f"absurd tempo of {max(tempi, key=lambda t: abs(np.log(t / 120))):.3g} bpm")
    if not notes and drums:
        raise UnusableFile("drums only")
    return Piece(
        notes=notes,
        tempo=tempi[0] if tempi else 120.0,
        time_signature=signatures[0] if signatures else "4/4",
        key=estimate_key(notes),
    )


def _midi_events(midi) -> tuple[list[Note], int, list[float], list[str]]:
    """Notes of every non-drum channel (times in quarters, straight from ticks), drum notes, tempi, metres.

    Reading ticks directly keeps times exact in quarters whatever the tempo map, and is
    several times faster than going through seconds.
    """
    per_quarter = midi.ticks_per_beat
    notes: list[Note] = []
    drums = 0
    tempi: list[tuple[int, float]] = []
    signatures: list[tuple[int, str]] = []
    for track in midi.tracks:
        tick = 0
        sounding: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for message in track:
            tick += message.time
            kind = message.type
            if kind == "note_on" and message.velocity > 0:
                if message.channel == 9:
                    drums += 1
                else:
                    sounding.setdefault((message.channel, message.note), []).append((tick, message.velocity))
            elif kind == "note_off" or kind == "note_on":
                started = sounding.get((message.channel, message.note))
                if started:
                    onset, velocity = started.pop(0)  # first on, first off, as pretty_midi pairs them
                    if tick > onset:
                        notes.append(Note(message.note, onset / per_quarter, (tick - onset) / per_quarter, velocity))
            elif kind == "set_tempo":
                tempi.append((tick, 60e6 / message.tempo))
            elif kind == "time_signature":
                signatures.append((tick, f"{message.numerator}/{message.denominator}"))
    notes.sort(key=lambda n: (n.start, n.pitch))
    return notes, drums, [t for _, t in sorted(tempi)], [s for _, s in sorted(signatures)]


def read_music21(path: Path) -> Piece:
    import music21

    try:
        # forceSource: no pickle cache under /tmp; stripTies: a tied note is one sounding note
        score = music21.converter.parse(str(path), forceSource=True).stripTies()
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UnusableFile(f"unreadable by music21 ({reason})") from None
    notes: list[Note] = []
    for element in score.flatten().notes:
        start, length = float(element.offset), float(element.quarterLength)
        velocity = element.volume.velocity or 90
        for pitch in element.pitches:
            notes.append(Note(int(pitch.midi), start, length, int(velocity)))
    notes = [n for n in notes if n.duration > 0]
    tempos = score.flatten().getElementsByClass("MetronomeMark")
    signatures = score.flatten().getElementsByClass("TimeSignature")
    return Piece(
        notes=notes,
        tempo=float(tempos[0].getQuarterBPM()) if tempos else 120.0,
        time_signature=signatures[0].ratioString if signatures else "4/4",
        key=estimate_key(notes),
    )


# Krumhansl-Kessler key profiles, C major and C minor
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
_PROFILES = np.array([np.roll(p, tonic) for p in (_MAJOR, _MINOR) for tonic in range(12)])
_NAMES = ["C", "C#", "D", "E-", "E", "F", "F#", "G", "A-", "A", "B-", "B"]


def estimate_key(notes: list[Note]) -> str:
    """Krumhansl-Schmuckler key estimate from duration-weighted pitch classes (e.g. 'G major')."""
    histogram = np.zeros(12)
    for note in notes:
        histogram[note.pitch % 12] += note.duration
    if not histogram.any():
        return ""
    scores = np.corrcoef(histogram, _PROFILES)[0, 1:]
    best = int(np.argmax(scores))
    return f"{_NAMES[best % 12]} {'major' if best < 12 else 'minor'}"


def write_midi(
    notes: list[Note],
    path: Path,
    bpm: float = 120.0,
    program: int = 0,
    time_signature: str = "4/4",
) -> Path:
    """Write notes (times in quarters) as a one-track MIDI file, atomically."""
    import pretty_midi

    seconds_per_quarter = 60.0 / bpm
    midi = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    numerator, denominator = (int(x) for x in time_signature.split("/"))
    midi.time_signature_changes.append(pretty_midi.TimeSignature(numerator, denominator, 0.0))
    instrument = pretty_midi.Instrument(program=program)
    for note in notes:
        start = note.start * seconds_per_quarter
        end = (note.start + note.duration) * seconds_per_quarter
        instrument.notes.append(pretty_midi.Note(int(note.velocity), int(note.pitch), start, end))
    midi.instruments.append(instrument)
    with atomic_path(path) as tmp:
        midi.write(str(tmp))
    return path


# ---- exporting music21's bundled collections -------------------------------------------

def collection_works(name: str) -> list[str]:
    """The music21 corpus paths of a collection: 'bach-chorales' or a composer/collection name."""
    from music21 import corpus

    if name == "bach-chorales":
        # the Riemenschneider numbering lists some chorales twice; export each work once
        return list(dict.fromkeys(str(w) for w in corpus.chorales.Iterator(returnType="filename")))
    works = [str(p) for p in corpus.getComposer(name)]
    if not works:
        raise ComposerError(f"{name}: not a music21 collection (try bach-chorales, bach, beethoven, essenFolksong)")
    return works


def export_work(work: str, dest: Path) -> Path | str:
    """Parse one music21 corpus work and write it as MIDI; returns the path or a reason."""
    from music21 import corpus

    name = work.rsplit("/", 1)[-1]
    for suffix in (".mxl", ".musicxml", ".xml", ".krn", ".abc", ".mid"):
        name = name.removesuffix(suffix)
    target = dest / (name.replace(".", "_") + ".mid")
    try:
        score = corpus.parse(work)
        with atomic_path(target) as tmp:
            score.write("midi", fp=str(tmp))
    except Exception as error:  # a work music21 itself cannot render is skipped, not fatal
        return f"{work}: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
    return target


def iter_export(name: str, dest: Path, jobs: int) -> Iterator[Path | str]:
    from concurrent.futures import ProcessPoolExecutor

    works = collection_works(name)
    dest.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(export_work, works, [dest] * len(works), chunksize=4)

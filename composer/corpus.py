"""Reading music files into notes, screening out bad files, writing MIDI, exporting music21 collections.

Every reader returns a ``Piece``: one polyphonic list of notes (all non-drum tracks merged,
times in quarter notes) plus the metadata that is not tokenized (tempo, time signature, key;
``meta["metre"]``: every time-signature change with its position, ``metre.metre_changes``).
With ``instruments`` the notes keep their General MIDI program (at their note-on) and the
drums (channel 10, or a music21 percussion part) are kept, flagged. A file that cannot be used
raises ``UnusableFile`` with a one-line reason.
"""

from __future__ import annotations

import errno
import io
import math
import os
import re
import stat
import zipfile
from collections import Counter, deque
from dataclasses import dataclass, field
from os import scandir
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

import numpy as np

from composer import ComposerError
from composer.config import Limits
from composer.metre import Change, metre_changes
from composer.storage import atomic_path
from composer.tokens import Note, NoteColumns

MIDI_SUFFIXES = {".mid", ".midi"}
MUSIC21_SUFFIXES = {".xml", ".mxl", ".musicxml", ".abc", ".krn"}
SUFFIXES = MIDI_SUFFIXES | MUSIC21_SUFFIXES
TEMPO_RANGE = (10.0, 1000.0)  # beats per minute
NUMERATOR_RANGE = (1, 64)
DENOMINATORS = (1, 2, 4, 8, 16, 32, 64)


class UnusableFile(Exception):
    """A file that is skipped, with the reason as its message."""


class UnreadableFile(UnusableFile):
    """Skipped because the system would not let it be read (permissions, a vanished file): a
    state of the machine, not of the file's content, so never cached by content."""


@dataclass
class Piece:
    notes: Sequence[Note]  # a list, or NoteColumns from the MIDI reader and once silences are bounded
    tempo: float = 120.0
    time_signature: str = "4/4"
    key: str = ""
    meta: dict = field(default_factory=dict)


@dataclass
class Found:
    """The music files under some sources, and the paths that cannot be read, with reasons."""

    files: list[Path]
    skipped: list[tuple[Path, str]]


def find_music_files(sources: list[Path]) -> list[Path]:
    """Every readable music file under the given files and folders, sorted, recursively."""
    return discover_music_files(sources).files


def discover_music_files(sources: list[Path]) -> Found:
    """Music files under the given files and folders (recursively, sorted), plus every path that
    looks like music or could hide some (a FIFO, a symlink loop, an unreadable folder) and cannot
    be read, with its reason: nothing vanishes silently."""
    found: set[Path] = set()
    skipped: dict[Path, str] = {}
    visited: set[tuple[int, int]] = set()
    for source in sources:
        if not os.path.lexists(source):
            raise ComposerError(f"{source}: no such file or folder")
        kind, reason = entry_kind(source)
        if kind == "folder":
            _walk(source, found, skipped, visited)
        elif kind == "file":
            found.add(source)
        else:
            skipped[source] = reason  # named on the command line: always say why it is not read
    return Found(sorted(found), sorted(skipped.items()))


def entry_kind(path: Path) -> tuple[str, str]:
    """("file" | "folder" | "bad", reason) from os.stat alone: nothing is opened."""
    try:
        info = os.stat(path)
    except OSError as error:
        return "bad", os_reason(error, link=os.path.islink(path))
    if stat.S_ISDIR(info.st_mode):
        return "folder", ""
    if stat.S_ISREG(info.st_mode):
        return "file", ""
    return "bad", special_reason(info.st_mode)


def _walk(folder: Path, found: set[Path], skipped: dict[Path, str], visited: set[tuple[int, int]]) -> None:
    try:
        info = os.stat(folder)
        with scandir(folder) as listing:
            entries = sorted(Path(entry.path) for entry in listing)
    except OSError as error:
        skipped[folder] = f"unreadable folder ({error.strerror or type(error).__name__})"
        return
    # a folder reached twice (a symlink to an ancestor loops forever) is searched once
    if (info.st_dev, info.st_ino) in visited:
        skipped[folder] = "folder already searched through another path (symbolic link loop or duplicate)"
        return
    visited.add((info.st_dev, info.st_ino))
    before = len(found)
    for path in entries:
        music = path.suffix.lower() in SUFFIXES
        kind, reason = entry_kind(path)
        if kind == "folder":
            _walk(path, found, skipped, visited)
        elif kind == "file":
            if music:
                found.add(path)
        elif music or not reason.startswith("broken"):
            # a broken link to a non-music name is no music lost; a loop or an unreadable
            # entry could be a folder of music
            skipped[path] = reason
    if folder.suffix.lower() in SUFFIXES and len(found) == before and folder not in skipped:
        skipped[folder] = "a folder named like a music file, with no music files in it"


def os_reason(error: OSError, link: bool = False) -> str:
    if error.errno == errno.ELOOP:
        return "symbolic link loop"
    if error.errno == errno.ENOENT and link:
        return "broken symbolic link"
    return f"unreadable ({error.strerror or type(error).__name__})"


def special_reason(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not a regular file"
    if stat.S_ISDIR(mode):
        return "a folder, not a file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a regular file"
    return "a device, not a regular file"


def _open_fd(path: Path) -> int:
    # O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it
    return os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; the size is checked before anything is read."""
    try:
        fd = _open_fd(path)
    except OSError as error:
        raise UnreadableFile(os_reason(error, link=os.path.islink(path))) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnusableFile(special_reason(info.st_mode))
        check_size(info.st_size, max_bytes)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(max_bytes + 1)  # never more, even if the file grew since the check
        except OSError as error:
            raise UnreadableFile(os_reason(error)) from None
    check_size(len(data), max_bytes)
    return data


def check_size(size: int, max_bytes: int) -> None:
    if size == 0:
        raise UnusableFile("empty file")
    if size > max_bytes:
        shown = f"{size / 1e9:.3g} GB" if size >= 1e9 else f"{size / 1e6:.3g} MB"
        raise UnusableFile(f"{shown} is over the {max_bytes / 1e6:g} MB size limit")


def read_piece(path: Path, limits: Limits = Limits(), instruments: bool = False) -> Piece:
    """Read one file into a Piece (of a file of several tunes, the first usable one) or raise
    UnusableFile saying why."""
    pieces = read_pieces(path, limits, instruments)
    usable = [piece for _, piece in pieces if isinstance(piece, Piece)]
    if not usable:
        raise UnusableFile(f"no usable tune ({pieces[0][1]})" if len(pieces) > 1 else str(pieces[0][1]))
    return usable[0]


def read_pieces(path: Path, limits: Limits = Limits(), instruments: bool = False) -> list[tuple[str, Piece | str]]:
    """Every piece of one file as (its tune number, the Piece or why it is skipped): one, with
    number "", for most files; one per tune for a file of several (an ABC file of many tunes,
    or any music21 opus), each with its own metre, key and tempo. Raises UnusableFile when the
    file as a whole cannot be used."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise UnusableFile(f"unknown file type {suffix!r}")
    data = read_bounded(path, limits.max_bytes)
    if suffix in MIDI_SUFFIXES:
        return [("", screened(read_midi(data, instruments), limits))]
    scores = parse_music21(path, unzip_musicxml(data, limits.max_bytes) if suffix == ".mxl" else None)
    if len(scores) == 1:
        return [("", screened(score_piece(scores[0][1], instruments), limits))]
    pieces: list[tuple[str, Piece | str]] = []
    for number, score in scores:
        try:
            pieces.append((number, screened(score_piece(score, instruments), limits)))
        except UnusableFile as error:
            pieces.append((number, str(error)))
    return pieces


def screened(piece: Piece, limits: Limits) -> Piece:
    """The piece if it has notes and sane metadata, its silences bounded; else UnusableFile."""
    if not piece.notes:
        raise UnusableFile("no notes")
    check_meta(piece)
    return bound_piece(piece, limits)


def check_meta(piece: Piece) -> None:
    """Reject absurd tempi and metres: they would divide by zero or make nonsense bars later."""
    if not all(TEMPO_RANGE[0] <= t <= TEMPO_RANGE[1] for t in piece.meta.get("tempi", [piece.tempo])):
        raise UnusableFile(tempo_reason(piece.meta.get("tempi", [piece.tempo])))
    for signature in piece.meta.get("time_signatures", [piece.time_signature]):
        reason = time_signature_problem(signature)
        if reason:
            raise UnusableFile(reason)


def tempo_reason(tempi: list[float]) -> str:
    """The reason naming the most absurd of some tempi (bpm; inf for a MIDI tempo of 0, NaN for unreadable)."""
    worst = max(tempi, key=lambda t: math.inf if not 0 < t < math.inf else abs(math.log(t / 120)))
    if math.isinf(worst):
        return "absurd tempo of 0 µs per quarter (infinitely fast)"
    if math.isnan(worst):
        return "absurd tempo (a metronome mark that gives no number)"
    return f"absurd tempo of {worst:.3g} bpm"


def time_signature_problem(signature: str) -> str:
    """A reason if a time signature such as '4/4' is absurd (0/4, 4/2^255, 255/4), else ''."""
    numerator, _, denominator = signature.partition("/")
    try:
        n, d = int(numerator), int(denominator)
    except ValueError:
        return f"unreadable time signature {signature[:20]!r}"
    if d > 65536 and d & (d - 1) == 0:  # 2**255 would be 77 digits
        shown = f"{n}/2^{d.bit_length() - 1}"
    else:
        shown = f"{n}/{d}" if len(signature) <= 20 else signature[:20] + "..."
    if not NUMERATOR_RANGE[0] <= n <= NUMERATOR_RANGE[1] or d not in DENOMINATORS:
        return f"absurd time signature {shown}"
    return ""


def bound_piece(piece: Piece, limits: Limits) -> Piece:
    """Shrink silences longer than ``max_silence`` quarters, then refuse a piece longer than ``max_quarters``."""
    notes = collapse_silences(piece.notes, limits.max_silence)
    length = notes.starts.max()
    if not length <= limits.max_quarters:  # also catches NaN
        raise UnusableFile(
            f"{length:,.0f} quarters long (silences shrunk), over the {limits.max_quarters:,g}-quarter limit"
        )
    if "metre" in piece.meta:  # the metre changes move with the notes
        before = NoteColumns.of(piece.notes).starts
        moved = moved_positions(np.array([at for at, _ in piece.meta["metre"]]), before, notes.starts)
        # of changes that a shrunk silence brings together, the last is the one the music resumes in
        latest = dict(zip(moved.tolist(), [s for _, s in piece.meta["metre"]]))
        piece.meta["metre"] = metre_changes(latest.items())
    piece.notes = notes
    return piece


def moved_positions(positions: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Positions (quarters) moved as ``collapse_silences`` moved the note starts ``before`` (sorted)
    to ``after``: by as much as the last note at or before each, and no later than the next
    note (a position inside a shrunk silence stays inside it)."""
    if not len(before):
        return positions
    i = np.searchsorted(before, positions, side="right")
    last = np.maximum(i - 1, 0)
    shift = np.where(i > 0, before[last] - after[last], 0.0)
    following = np.minimum(i, len(before) - 1)
    return np.where(i < len(before), np.minimum(positions - shift, after[following]), positions - shift)


def collapse_silences(notes: Sequence[Note], max_silence: float) -> NoteColumns:
    """Notes (sorted by start) with every silence longer than ``max_silence`` quarters shrunk to it.

    A note counts as sounding for at most ``max_silence`` quarters, so that one absurdly long note
    cannot hide an absurd gap; the onset-to-onset distance is then at most twice ``max_silence``.
    """
    columns = NoteColumns.of(notes)
    starts, durations = columns.starts, columns.durations
    # how far sound reaches before each note; a long silence before the first one shrinks too
    reach = np.maximum.accumulate(np.concatenate([[0.0], starts + np.minimum(durations, max_silence)]))[:-1]
    gaps = starts - reach
    removed = np.cumsum(np.where(gaps > max_silence, gaps - max_silence, 0.0))
    return NoteColumns(columns.pitches, starts - removed, durations, columns.velocities, columns.programs, columns.drums)


def read_midi(data: bytes, instruments: bool = False) -> Piece:
    """A MIDI file's Piece through symusic (C++, several times faster), or through mido where
    symusic refuses the file, finds no notes in it, or is known to read it differently: mido then
    gives the reason a damaged file is skipped, exactly as before symusic."""
    check_midi_header(data)
    events = symusic_events(data, instruments) if symusic_reads_as_mido(data) else None
    if events is None:
        return read_midi_mido(data, instruments)
    return midi_piece(*events)


def read_midi_mido(data: bytes, instruments: bool = False) -> Piece:
    """The reference reader (pure Python, from mido's messages): the fallback of ``read_midi``
    and what its symusic path is tested against."""
    import mido

    check_midi_header(data)
    try:
        midi = mido.MidiFile(file=io.BytesIO(data))
    except Exception as error:  # mido raises many types for damaged files
        reason = str(error).splitlines()[0] if str(error) else ""
        if len(reason) < 12:  # KeyError(4), EOFError(): the type says more than the message
            reason = f"{type(error).__name__}: {reason}".rstrip(": ")
        raise UnusableFile(f"damaged MIDI file ({reason[:200]})") from None
    notes, drums, tempi, signatures = _midi_events(midi, instruments)
    if not notes and drums:
        raise UnusableFile("drums only")
    return midi_piece(notes, tempi, signatures)


def check_midi_header(data: bytes) -> None:
    header = data[:14]
    if header[:4] != b"MThd":
        raise UnusableFile("not a MIDI file (no MThd header)")
    if len(header) < 14:
        raise UnusableFile("damaged MIDI file (header cut short)")
    # checked before either parser, which fail on these with unrelated messages or not at all
    division = int.from_bytes(header[12:14], "big", signed=True)
    if division < 0:
        raise UnusableFile("SMPTE time-code resolution (frames per second) is not supported")
    if division == 0:
        raise UnusableFile("absurd resolution of 0 ticks per quarter")


def midi_piece(notes: Sequence[Note], tempi: list[float], signatures: list[Change]) -> Piece:
    """A Piece from what a reader found (MIDI's or music21's); ``signatures``: (quarter, metre), sorted."""
    names = [s for _, s in signatures]
    return Piece(
        notes=notes,
        tempo=tempi[0] if tempi else 120.0,
        time_signature=names[0] if names else "4/4",
        key=estimate_key(notes),
        meta={"tempi": tempi, "time_signatures": names, "metre": metre_changes(signatures)},
    )


def note_order(note: Note) -> tuple[float, int, float, int, bool, int]:
    """One total order for both MIDI readers, so that they give the very same list (duplicates
    at one onset included: with velocity bins, the first of the longest gives the velocity)."""
    return note.start, note.pitch, note.duration, note.velocity, note.drum, note.program


def _midi_events(midi, instruments: bool = False) -> tuple[list[Note], int, list[float], list[Change]]:
    """Notes of every non-drum channel (times in quarters, straight from ticks), drum notes,
    tempi, metres with their positions (quarters). With ``instruments``, the notes carry their
    program and the drums are among them (flagged).

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
        # deques: a file striking one key a million times before releasing it stays linear
        sounding: dict[tuple[int, int], deque[tuple[int, int, int]]] = {}
        programs = [0] * 16  # per channel, as the track's program changes set them (symusic's track split)
        for message in track:
            tick += message.time
            kind = message.type
            if kind == "note_on" and message.velocity > 0:
                if message.channel == 9 and not instruments:
                    drums += 1
                else:
                    program = programs[message.channel] if instruments and message.channel != 9 else 0
                    sounding.setdefault((message.channel, message.note), deque()).append((tick, message.velocity, program))
            elif kind == "note_off" or kind == "note_on":
                started = sounding.get((message.channel, message.note))
                if started:
                    onset, velocity, program = started.popleft()  # first on, first off, as pretty_midi pairs them
                    if tick > onset:
                        notes.append(Note(message.note, onset / per_quarter, (tick - onset) / per_quarter, velocity, program, message.channel == 9))
            elif kind == "program_change":
                programs[message.channel] = message.program
            elif kind == "set_tempo":
                tempi.append((tick, bpm(message.tempo)))
            elif kind == "time_signature":
                signatures.append((tick, f"{message.numerator}/{message.denominator}"))
    notes.sort(key=note_order)
    return notes, drums, [t for _, t in sorted(tempi)], [(t / per_quarter, s) for t, s in sorted(signatures)]


def bpm(microseconds: int) -> float:
    # a tempo of 0 µs per beat is infinitely fast: kept as inf for the tempo screen, not divided
    return 60e6 / microseconds if microseconds > 0 else math.inf


# symusic keeps ticks in int32: a file whose events pass 2**31 ticks would wrap round. Below
# 2**30 no wrap can hide, since one delta time adds at most 2**28 ticks
SYMUSIC_MAX_TICK = 1 << 30
# mido refuses a meta or sysex event longer than this (midifiles.MAX_MESSAGE_LENGTH); a track
# chunk that long might hold one
MIDO_MAX_MESSAGE = 1_000_000
# meta types mido knows (midifiles.meta._META_SPECS); it gives any other type a delta time of 0,
# dropping the ticks written before it, where symusic keeps them
MIDO_META_TYPES = frozenset([0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x09, 0x20, 0x21, 0x2F, 0x51, 0x54, 0x58, 0x59, 0x7F])

# four bytes of 0x80 or more in a row: a delta time over 4 bytes, which mido reads whole and
# symusic cuts at 4 (or an odd run inside a text)
_LONG_VLQ = re.compile(rb"[\x80-\xff]{4}")
# meta types read alike by both (texts, port), as the byte after 0xFF: nothing to check
_PLAIN_BYTES = frozenset(bytes([kind]) for kind in (0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x09, 0x21, 0x7F))


def symusic_reads_as_mido(data: bytes) -> bool:
    """Whether symusic would read this file as mido does, by what is known to differ.

    symusic stops a track at its first end-of-track event (mido reads on to the chunk's end),
    skips chunks that are not tracks (mido refuses them), reads any track count past the real
    ones, reads at most 4 bytes of a delta time, wraps time-signature denominators over 128
    into a byte, accepts short tempo, metre and key events that mido refuses, and keeps the
    delta time that mido drops before a meta event of a type it does not know. Byte patterns
    that merely look like such events (inside a text, say) only send a file to mido: slower,
    never different.
    """
    tracks = int.from_bytes(data[10:12], "big", signed=True)  # signed, as mido reads it
    if int.from_bytes(data[4:8], "big") != 6 or tracks <= 0:
        return False
    position = 14
    for _ in range(tracks):
        kind, size = data[position : position + 4], int.from_bytes(data[position + 4 : position + 8], "big")
        start, end = position + 8, position + 8 + size
        if kind != b"MTrk" or end > len(data) or size > MIDO_MAX_MESSAGE:
            return False
        if _LONG_VLQ.search(data, start, end):
            return False
        # a meta event starts with 0xFF after a delta time's last byte (under 0x80); 0xFF first
        # in a track or after a higher byte is inside a delta time
        at = data.find(b"\xff", start + 1, end)
        while at != -1:
            if data[at - 1] < 0x80 and data[at + 1 : at + 2] not in _PLAIN_BYTES and not _meta_agrees(data, at, start, end):
                return False
            at = data.find(b"\xff", at + 1, end)
        position = end
    return True


def _meta_agrees(data: bytes, at: int, start: int, end: int) -> bool:
    """Whether the meta event at ``at`` (0xFF, type, length, data) of the track in
    ``data[start:end]`` reads the same in both parsers, with no refusal from mido; lengths of
    128 or more (two VLQ bytes) count as not."""
    if at + 2 >= end or data[at + 2] >= 0x80 or at + 3 + data[at + 2] > end:
        return False
    kind, size = data[at + 1], data[at + 2]
    body = data[at + 3 : at + 3 + size]
    if kind not in MIDO_META_TYPES:  # agrees only after a delta time of 0 (one byte 0, not 0x81 0x00)
        return data[at - 1] == 0 and (at - 1 == start or data[at - 2] < 0x80)
    if kind == 0x00:
        return size != 1
    if kind == 0x20:
        return size >= 1
    if kind == 0x2F:  # the end of the track, and only there: symusic stops at it
        return size == 0 and at == end - 3
    if kind == 0x51:
        return size == 3
    if kind == 0x54:  # mido checks the frame rate code, minutes, seconds and sub-frames
        return size >= 5 and body[0] >> 5 <= 3 and body[1] <= 59 and body[2] <= 59 and body[4] <= 99
    if kind == 0x58:
        return size == 4 and body[1] <= 7
    if size != 2:  # 0x59: mido names keys of -7..7 flats or sharps, major or minor
        return False
    key = body[0] - 256 if body[0] > 127 else body[0]
    return -7 <= key <= 7 and body[1] <= 1


def symusic_events(data: bytes, instruments: bool = False) -> tuple[NoteColumns, list[float], list[Change]] | None:
    """(notes, tempi, metres) as ``_midi_events`` finds them, through symusic; None when
    symusic refuses the file, finds no notes, or its ticks could have wrapped round."""
    try:
        import symusic
    except ImportError:  # an install without its wheel (a platform it lacks): mido reads every file
        return None
    try:
        score = symusic.Score.from_midi(data)  # ticks: exact, as mido's
    except Exception:  # RuntimeError for a damaged file: mido names the damage
        return None
    per_quarter = score.ticks_per_quarter
    tracks = [track for track in score.tracks if instruments or not track.is_drum]
    columns = [track.notes.numpy() for track in tracks]
    if not columns:
        return None
    starts, lengths, pitches, velocities = (
        np.concatenate([c[name] for c in columns], dtype=np.int64) for name in ("time", "duration", "pitch", "velocity")
    )
    # symusic splits a track at each program change, so a track's program is its notes'
    programs = np.concatenate([np.full(len(c["time"]), t.program if instruments and not t.is_drum else 0, np.int64) for t, c in zip(tracks, columns)])
    drums = np.concatenate([np.full(len(c["time"]), t.is_drum, bool) for t, c in zip(tracks, columns)])
    tempi = sorted((t.time, bpm(t.mspq)) for t in score.tempos)
    signatures = sorted((s.time, f"{s.numerator}/{s.denominator}") for s in score.time_signatures)
    times = np.concatenate([starts, starts + lengths, [t for t, _ in tempi], [t for t, _ in signatures]])
    if len(times) and not 0 <= times.min() <= times.max() < SYMUSIC_MAX_TICK:
        return None
    kept = lengths > 0  # mido's reader drops a note released where it starts
    if not kept.any():
        return None
    starts, lengths, pitches, velocities, programs, drums = (a[kept] for a in (starts, lengths, pitches, velocities, programs, drums))
    order = np.lexsort((programs, drums, velocities, lengths, pitches, starts))  # note_order: ticks sort as quarters do
    notes = NoteColumns(
        pitches[order], starts[order] / per_quarter, lengths[order] / per_quarter, velocities[order], programs[order], drums[order]
    )
    return notes, [t for _, t in tempi], [(t / per_quarter, s) for t, s in signatures]


def unzip_musicxml(data: bytes, max_bytes: int) -> bytes:
    """The score inside a compressed MusicXML (.mxl) file, decompressing at most ``max_bytes``.

    Sizes declared in the zip can lie, so the bound is on what is actually decompressed: a zip
    bomb stops at the limit instead of filling memory.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            root = _mxl_root(archive, names, max_bytes)
            with archive.open(root) as member:
                xml = member.read(max_bytes + 1)
    except UnusableFile:
        raise
    except Exception as error:  # zipfile raises BadZipFile, KeyError, zlib.error, EOFError, ...
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UnusableFile(f"damaged compressed MusicXML ({reason[:200]})") from None
    if len(xml) > max_bytes:
        raise UnusableFile(f"decompresses to over the {max_bytes / 1e6:g} MB size limit (stopped there)")
    if not xml:
        raise UnusableFile("damaged compressed MusicXML (empty score inside)")
    return xml


def _mxl_root(archive: zipfile.ZipFile, names: list[str], max_bytes: int) -> str:
    """The score's name inside an .mxl: META-INF/container.xml's rootfile, else the first .xml."""
    if "META-INF/container.xml" in names:
        with archive.open("META-INF/container.xml") as member:
            container = member.read(min(max_bytes, 1_000_000)).decode("utf-8", "replace")
        match = re.search(r"<rootfile[^>]*full-path=[\"']([^\"']+)[\"']", container)
        if match and match.group(1) in names:
            return match.group(1)
    candidates = [n for n in names if not n.startswith("META-INF/") and n.lower().endswith((".xml", ".musicxml"))]
    if not candidates:
        raise UnusableFile("damaged compressed MusicXML (no score inside)")
    return candidates[0]


def parse_music21(path: Path, data: bytes | None = None) -> list[tuple[str, object]]:
    """The scores in a file, through music21, from the file or (for .mxl) from its already
    decompressed XML: [("", score)], or (tune number, score) for each tune of an opus (the
    ABC X: numbers where they are unique, else positions from 1)."""
    import music21

    try:
        # forceSource: no pickle cache under /tmp
        if data is None:
            parsed = music21.converter.parse(str(path), forceSource=True)
        else:
            parsed = music21.converter.parseData(data, format="musicxml")
    except Exception as error:
        raise UnusableFile(f"unreadable by music21 ({first_line(error)})") from None
    if not isinstance(parsed, music21.stream.Opus):
        return [("", parsed)]
    scores = list(parsed.scores)
    if not scores:
        raise UnusableFile("no tunes")
    numbers = [str(score.metadata.number) if score.metadata is not None and score.metadata.number else "" for score in scores]
    if "" in numbers or len(set(numbers)) < len(numbers):
        numbers = [str(i) for i in range(1, len(scores) + 1)]
    return list(zip(numbers, scores))


def score_piece(score, instruments: bool = False) -> Piece:
    """One music21 score as a Piece: its notes, tempo marks and metres; with ``instruments``,
    each part's General MIDI program (its instrument's), a percussion part as drums."""
    try:
        stripped = score.stripTies()  # stripTies: a tied note is one sounding note
        flat = stripped.flatten()
        notes: list[Note] = []
        for part, program, drum in _part_instruments(stripped) if instruments else [(flat, 0, False)]:
            for element in part.flatten().notes if instruments else flat.notes:
                start, length = float(element.offset), float(element.quarterLength)
                velocity = element.volume.velocity or 90
                for pitch in _element_pitches(element, drum):
                    notes.append(Note(pitch, start, length, int(velocity), program, drum))
        tempi = [_quarter_bpm(mark) for mark in flat.getElementsByClass("MetronomeMark")]
        # numerator/denominator rather than ratioString: "3+2/8" becomes "5/8", which every reader parses
        placed = [(float(ts.offset), f"{ts.numerator}/{ts.denominator}") for ts in flat.getElementsByClass("TimeSignature")]
    except Exception as error:
        raise UnusableFile(f"unreadable by music21 ({first_line(error)})") from None
    notes = [n for n in notes if n.duration > 0 and math.isfinite(n.start) and n.start >= 0 and 0 <= n.pitch <= 127]
    notes.sort(key=lambda n: (n.start, n.pitch, n.drum, n.program))
    return midi_piece(notes, tempi, placed)


def _part_instruments(score) -> list[tuple[object, int, bool]]:
    """(part, GM program, drums?) of each part of a score (the whole score when it has none):
    the program of the part's first instrument, 0 where it names none."""
    from music21 import instrument

    parts = list(score.parts) or [score]
    found = []
    for part in parts:
        named = part.getInstrument(returnDefault=False)
        drum = isinstance(named, instrument.UnpitchedPercussion) or (named is not None and named.midiChannel == 9)
        program = named.midiProgram if named is not None and named.midiProgram is not None and not drum else 0
        found.append((part, int(program), drum))
    return found


def _element_pitches(element, drum: bool) -> list[int]:
    """MIDI keys of a note, chord or unpitched stroke (an unpitched one by its percussion map)."""
    if hasattr(element, "pitches") and element.pitches:
        return [int(p.midi) for p in element.pitches]
    midi = getattr(element, "percMapPitch", None) if drum else None
    return [int(midi)] if midi is not None else []


def first_line(error: Exception) -> str:
    """An exception's message for a one-line reason: its first line, or its type."""
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__


def _quarter_bpm(mark) -> float:
    # a mark of 0 (or one music21 cannot convert) is an absurd tempo for the screen, not a crash
    try:
        bpm = float(mark.getQuarterBPM())
    except Exception:
        return math.nan
    return bpm


# Krumhansl-Kessler key profiles, C major and C minor
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
_PROFILES = np.array([np.roll(p, tonic) for p in (_MAJOR, _MINOR) for tonic in range(12)])
# standardized once: a histogram's correlation with all 24 is then one product (np.corrcoef
# rebuilt the 25 x 25 covariance per piece; the scores agree to 1e-12)
_STANDARD_PROFILES = (_PROFILES - _PROFILES.mean(axis=1, keepdims=True)) / _PROFILES.std(axis=1, keepdims=True)
KEY_NAMES = ["C", "C#", "D", "E-", "E", "F", "F#", "G", "A-", "A", "B-", "B"]


def estimate_key(notes: Sequence[Note]) -> str:
    """Krumhansl-Schmuckler key estimate from duration-weighted pitch classes (e.g. 'G major')."""
    columns = NoteColumns.of(notes)
    pitched = ~columns.drums  # a drum's key is no pitch class
    histogram = np.bincount(columns.pitches[pitched] % 12, weights=columns.durations[pitched], minlength=12)  # summed in note order
    if not histogram.any():
        return ""
    centred = histogram - histogram.mean()
    spread = np.sqrt(np.mean(centred**2))
    if spread == 0:  # every pitch class equally long: no correlation, and no key to prefer
        return "C major"
    best = int(np.argmax(_STANDARD_PROFILES @ (centred / spread)))
    return f"{KEY_NAMES[best % 12]} {'major' if best < 12 else 'minor'}"


def write_midi(
    notes: list[Note],
    path: Path,
    bpm: float = 120.0,
    program: int | None = None,
    time_signature: str = "4/4",
    end: float | None = None,
    time_signatures: Sequence[Change] | None = None,
) -> Path:
    """Write notes (times in quarters) as a MIDI file, atomically: one track per instrument (its
    program; the drums with ``is_drum``, which pretty_midi writes on channel 10), or with
    ``program`` every note on one track of that program. Notes without instruments are all
    program 0, so they make one piano track either way.

    With ``end`` (quarters), notes are cut there and the file lasts until then even if the
    music ends in a rest: a sample asked for 16 bars plays 16 bars. ``time_signatures``, the
    metre's changes as (quarter, "n/d") (``metre.metre_changes``), replaces ``time_signature``.
    """
    import pretty_midi

    seconds_per_quarter = 60.0 / bpm
    midi = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    for at, signature in time_signatures or [(0.0, time_signature)]:
        numerator, denominator = (int(x) for x in signature.split("/"))
        midi.time_signature_changes.append(pretty_midi.TimeSignature(numerator, denominator, at * seconds_per_quarter))
    tracks: dict[tuple[bool, int], object] = {}
    for note in notes:
        finish = note.start + note.duration if end is None else min(note.start + note.duration, end)
        if finish > note.start:
            drum = note.drum and program is None
            key = (drum, (note.program if program is None else program) if not drum else 0)
            if key not in tracks:
                tracks[key] = pretty_midi.Instrument(program=key[1], is_drum=drum)
            tracks[key].notes.append(
                pretty_midi.Note(int(note.velocity), int(note.pitch), note.start * seconds_per_quarter, finish * seconds_per_quarter)
            )
    # in instrument order, drums last; a piece of no notes still has its (piano) track
    instruments = [tracks[key] for key in sorted(tracks)] or [pretty_midi.Instrument(program=program or 0)]
    if end is not None:
        # a no-op controller event (sustain off) marks the end: players and renderers stop at the last event
        instruments[0].control_changes.append(pretty_midi.ControlChange(64, 0, end * seconds_per_quarter))
    midi.instruments.extend(instruments)
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


@dataclass(frozen=True)
class Exported:
    """One MIDI file of an export: written, or left as it was (already there), or, with no
    file, the reason a work could not be exported."""

    work: str
    path: Path | None
    existed: bool = False
    reason: str = ""


def export_names(works: list[str]) -> list[str]:
    """A file name (without suffix) per work of a collection, unique within it: the file's
    name with as many of its folders in front as it takes to tell it from the others
    (mozart/k155/movement1.mxl → k155_movement1), dots made underscores (bwv1.6 → bwv1_6).
    Works that no folder tells apart (one listed twice) are numbered."""
    parts = [work_parts(work) for work in works]
    depth = [1] * len(works)
    while True:
        names = ["_".join(p[-d:]).replace(".", "_") for p, d in zip(parts, depth)]
        clashes: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            clashes.setdefault(name, []).append(i)
        deeper = [
            i for group in clashes.values() if len({parts[j] for j in group}) > 1
            for i in group if depth[i] < len(parts[i])
        ]
        if not deeper:
            break
        for i in deeper:
            depth[i] += 1
    seen: Counter[str] = Counter()
    unique = []
    for name in names:
        seen[name] += 1
        unique.append(name if len(clashes[name]) == 1 else f"{name}-{seen[name]}")
    return unique


def work_parts(work: str) -> tuple[str, ...]:
    """A corpus path's folders and file name, its music suffix (if any) removed; no root."""
    path = PurePosixPath(work.replace("\\", "/"))
    name = path.name
    for suffix in (".mxl", ".musicxml", ".xml", ".krn", ".abc", ".mid"):
        name = name.removesuffix(suffix)
    return tuple(part for part in path.parent.parts if part != "/") + (name,)


def export_work(work: str, dest: Path, name: str) -> list[Exported]:
    """Parse one music21 corpus work and write it as ``dest/name.mid`` (a work of several tunes:
    one file per tune, ``name-1.mid`` …). A file already there is never replaced."""
    from music21 import corpus, stream

    try:
        parsed = corpus.parse(work)
        scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
        width = len(str(len(scores)))
        targets = [dest / f"{name}.mid"] if len(scores) == 1 else [dest / f"{name}-{i:0{width}d}.mid" for i in range(1, len(scores) + 1)]
        results = []
        for score, target in zip(scores, targets):
            if target.exists():
                results.append(Exported(work, target, existed=True))
                continue
            with atomic_path(target) as tmp:
                score.write("midi", fp=str(tmp))
            results.append(Exported(work, target))
    except Exception as error:  # a work music21 itself cannot render is skipped, not fatal
        return [Exported(work, None, reason=f"{work}: {first_line(error)}")]
    return results


def iter_export(name: str, dest: Path, jobs: int) -> Iterator[list[Exported]]:
    """Export a collection into ``dest``, one list of files per work, in the collection's order."""
    from concurrent.futures import ProcessPoolExecutor

    works = collection_works(name)
    dest.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(export_work, works, [dest] * len(works), export_names(works), chunksize=4)

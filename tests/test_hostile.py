"""A hostile corpus: a zoo of malformed files and a few hundred fuzzed ones, through `composer tokenize`.

Every file is built here. Whatever the input, tokenizing exits 0 (or 1 with one line when
nothing is usable), prints no traceback, keeps every good file, and either skips a bad one with
a one-line reason or keeps it bounded in size. ``fuzz_files`` is shared with
``benchmarks/fuzz_corpus.py``, which runs the same generator over 10,000+ files.
"""

from __future__ import annotations

import errno
import math
import os
import random
import re
import resource
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import composer.corpus as corpus_module
from composer import ComposerError
from composer.cli import app
from composer.config import DEFAULT_MAX_QUARTERS, DEFAULT_MAX_TOKENS
from composer.corpus import (
    Limits,
    UnusableFile,
    collapse_silences,
    midi_piece,
    read_midi,
    read_midi_mido,
    read_piece,
    symusic_events,
    symusic_reads_as_mido,
)
from composer.dataset import TokenCorpus
from composer.tokens import Note, TokenizerConfig, Vocabulary, decode_tokens

SKIPPED = re.compile(r"^skipped (.+?): (.+)$")
FILES = re.compile(r"files read: (\d+)\s+skipped: (\d+)")
VOCAB = Vocabulary(TokenizerConfig())
CHORALES = Path(__file__).resolve().parent.parent / "midi_data" / "bach_chorales"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ---- building MIDI by hand ------------------------------------------------------------------------


def vlq(n: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def chunk(kind: bytes, body: bytes, length: int | None = None) -> bytes:
    return kind + struct.pack(">I", len(body) if length is None else length) + body


def smf(events: list[bytes], division: int = 480, tracks: int = 1, fmt: int = 0, end: bool = True) -> bytes:
    """A standard MIDI file: header, then one track of the given (delta + event) byte strings."""
    body = b"".join(events) + (b"\x00\xff\x2f\x00" if end else b"")
    header = chunk(b"MThd", struct.pack(">HHh", fmt, tracks, division))
    return header + chunk(b"MTrk", body)


def note(pitch: int = 60, length: int = 480, delta: int = 0, velocity: int = 80) -> list[bytes]:
    return [vlq(delta) + bytes([0x90, pitch, velocity]), vlq(length) + bytes([0x80, pitch, 0])]


def meta(kind: int, data: bytes, delta: int = 0) -> bytes:
    return vlq(delta) + bytes([0xFF, kind]) + vlq(len(data)) + data


def melody(count: int = 8, division: int = 480) -> list[bytes]:
    events = []
    for i in range(count):
        events += note(60 + (i * 7) % 12, division // 2, delta=division // 2 if i else 0)
    return events


# ---- the zoo --------------------------------------------------------------------------------------


def build_zoo(folder: Path, chorales: list[Path]) -> tuple[dict[str, str], list[str], dict[str, int]]:
    """Write the malformed zoo into ``folder``.

    Returns ({name: part of the expected skip reason}, [names that must be kept],
    {name: most tokens allowed} for files that are kept because their damage is bounded).
    """
    folder.mkdir(parents=True, exist_ok=True)
    real = chorales[0].read_bytes()
    good_melody = smf(melody())
    skip: dict[str, str] = {}
    bounded: dict[str, int] = {}

    def put(name: str, data: bytes, reason: str | None = None) -> None:
        (folder / name).write_bytes(data)
        if reason is not None:
            skip[name] = reason

    put("empty.mid", b"", "empty file")
    put("header_only.mid", b"MThd", "damaged")
    put("header_cut.mid", real[:10], "header cut short")
    put("no_track.mid", real[:14], "damaged")
    put("chunk_length_huge.mid", chunk(b"MThd", struct.pack(">HHh", 0, 1, 480)) + b"MTrk\xff\xff\xff\xf0" + b"".join(melody()), "damaged")
    put("header_length_huge.mid", b"MThd\x7f\xff\xff\xff" + struct.pack(">HHh", 0, 1, 480) + good_melody[14:], "damaged")
    put("truncated_track.mid", good_melody[: len(good_melody) - 12], "damaged")
    put("zero_ticks_per_beat.mid", smf(melody(), division=0), "resolution")
    put("smpte.mid", smf(melody(), division=-(0x10000 - 0xE728)), "resolution")
    put("tempo_zero.mid", smf([meta(0x51, b"\x00\x00\x00")] + melody()), "tempo")
    put("tempo_zero_later.mid", smf(melody(4) + [meta(0x51, b"\x00\x00\x00")] + melody(4)), "tempo")
    put("tempo_slowest.mid", smf([meta(0x51, b"\xff\xff\xff")] + melody()), "tempo")
    put("tempo_one_microsecond.mid", smf([meta(0x51, b"\x00\x00\x01")] + melody()), "tempo")
    put("metre_0_4.mid", smf([meta(0x58, bytes([0, 2, 24, 8]))] + melody()), "time signature 0/4")
    put("metre_4_2pow255.mid", smf([meta(0x58, bytes([4, 255, 24, 8]))] + melody()), "time signature 4/2^255")
    put("metre_255_4.mid", smf([meta(0x58, bytes([255, 2, 24, 8]))] + melody()), "time signature 255/4")
    put("metre_4_1024.mid", smf([meta(0x58, bytes([4, 10, 24, 8]))] + melody()), "time signature 4/1024")
    put("garbage.mid", b"\x00" + random.Random(1).randbytes(4000), "no MThd")
    put("garbage_after_header.mid", real[:14] + random.Random(2).randbytes(4000), "damaged")
    # a data byte where a status byte must be, at the start of a track: no running status to reuse
    put("bad_running_status.mid", smf([b"\x00\x3c\x40"] + melody()), "damaged")
    put("data_byte_over_127.mid", smf([b"\x00\x90\xbc\x40"] + melody()), "damaged")
    put("bad_key_signature.mid", smf([meta(0x59, bytes([30, 7]))] + melody()), "damaged")
    put("drums_only.mid", smf([b"\x00\x99\x24\x40", b"\x60\x89\x24\x00"]), "drums only")
    put("no_notes.mid", smf([meta(0x51, b"\x07\xa1\x20")]), "no notes")
    put("note_off_only.mid", smf([b"\x00\x80\x3c\x00", b"\x60\x80\x3e\x00"]), "no notes")
    put("text.mid", b"This is a text file, not a MIDI file.\n" * 20, "no MThd")
    # 1 tick per quarter and three delta times of 0x0FFFFFFF: 800 million quarters of silence,
    # once 100,663,304 tokens; now the silences shrink to 4 bars and the piece is a few tokens
    put("huge_deltas.mid", smf(note(60, 1) + note(62, 1, delta=0x0FFFFFFF) + note(64, 1, delta=0x0FFFFFFF) + note(65, 0x0FFFFFFF, delta=0), division=1))
    bounded["huge_deltas.mid"] = 40
    # one note held for 2^28 ticks cannot hide the gap after it
    put("endless_note.mid", smf(note(60, 0x0FFFFFFF) + note(62, 480, delta=0x0FFFFFF), division=1))
    bounded["endless_note.mid"] = 40
    # evenly spaced notes (no long silence to shrink) over more than the quarter limit
    spaced = []
    for i in range(1_200):
        spaced += note(60 + i % 12, 1, delta=10 if i else 0)
    put("too_long.mid", smf(spaced, division=1), "quarter limit")
    # 100,000 simultaneous strikes of one key, then the releases: linear, not quadratic
    put("one_key_struck_often.mid", smf([b"\x00\x90\x3c\x40"] + [b"\x00\x3c\x40"] * 100_000 + [b"\x01\x80\x3c\x00"] + [b"\x00\x3c\x00"] * 100_000))
    bounded["one_key_struck_often.mid"] = 10
    # too big: a real file padded past the 10 MB limit with an unknown chunk, and a 3 GB sparse file
    put("too_big.mid", real + chunk(b"XPAD", bytes(10_500_000)), "size limit")
    with open(folder / "sparse_3gb.mid", "wb") as f:
        f.write(real)
        f.truncate(3_000_000_000)
    skip["sparse_3gb.mid"] = "size limit"
    # compressed MusicXML: a zip bomb, a zip without a score, not a zip at all
    with zipfile.ZipFile(folder / "zip_bomb.mxl", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("META-INF/container.xml", '<container><rootfiles><rootfile full-path="score.xml"/></rootfiles></container>')
        with archive.open("score.xml", "w", force_zip64=True) as member:
            block = b" " * (1 << 20)
            for _ in range(64):  # 64 MB of spaces, about 64 KB compressed
                member.write(block)
    skip["zip_bomb.mxl"] = "decompresses to over the 10 MB size limit"
    with zipfile.ZipFile(folder / "empty_zip.mxl", "w") as archive:
        archive.writestr("readme.txt", "no score here")
    skip["empty_zip.mxl"] = "no score inside"
    put("not_a_zip.mxl", b"PK\x03\x04" + random.Random(3).randbytes(500), "damaged compressed MusicXML")
    put("broken.xml", b"<score-partwise><part id='P1'><measure", "music21")
    put("not_xml.musicxml", b"\x00\x01 hello", "music21")
    put("broken.abc", b"X:1\nT:t\nM:4/4\nL:1/0\nK:C\nC9D|((((\n", "music21")
    put("abc_tempo_zero.abc", b"X:1\nT:t\nM:4/4\nL:1/4\nQ:1/4=0\nK:C\nCDEF|GABc|\n", "tempo")
    put("abc_metre_zero.abc", b"X:1\nT:t\nM:0/4\nL:1/4\nK:C\nCDEF|GABc|\n", "music21")
    put("broken.krn", b"**kern\n4c\n*-\n4d\n", "music21")
    put("unknown_type.mid.txt", b"MThd")  # not a music suffix: not a candidate, no line
    # not regular files
    (folder / "folder_named.mid").mkdir()
    skip["folder_named.mid"] = "folder named like a music file"
    os.mkfifo(folder / "fifo.mid")
    skip["fifo.mid"] = "FIFO"
    os.symlink("loop_b.mid", folder / "loop_a.mid")
    os.symlink("loop_a.mid", folder / "loop_b.mid")
    skip["loop_a.mid"] = skip["loop_b.mid"] = "symbolic link loop"
    os.symlink("nowhere.mid", folder / "dangling.mid")
    skip["dangling.mid"] = "broken symbolic link"
    (folder / "sub").mkdir()
    os.symlink("..", folder / "sub" / "up")  # a folder loop: searched once, said once
    skip["sub/up"] = "already searched"
    # kept: real chorales, a hand-made melody, a folder that happens to end in .mid, good MusicXML and ABC
    keep = []
    for path in chorales[1:4]:
        shutil.copy(path, folder / path.name)
        keep.append(path.name)
    put("melody.mid", good_melody)
    put("melody_tpq1.mid", smf(melody(division=2), division=2))
    (folder / "album.mid").mkdir()
    shutil.copy(chorales[4], folder / "album.mid" / "inside.mid")
    keep += ["melody.mid", "melody_tpq1.mid", "album.mid/inside.mid"]
    put("good.abc", b"X:1\nT:t\nM:3/4\nL:1/4\nQ:1/4=100\nK:G\nGAB|c2B|AGF|G3|\n")
    keep.append("good.abc")
    import music21

    score = music21.converter.parse("tinyNotation: 3/4 c4 d e f g a b c' d'")
    score.write("mxl", fp=str(folder / "good.mxl"))
    keep.append("good.mxl")
    return skip, keep, bounded


def run_tokenize(*args: str | Path):
    result = CliRunner().invoke(app, ["tokenize", *map(str, args)])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def skipped_lines(output: str, root: Path) -> dict[str, str]:
    reasons = {}
    for line in output.splitlines():
        match = SKIPPED.match(line)
        if match:
            reasons[Path(match.group(1)).relative_to(root).as_posix()] = match.group(2)
    return reasons


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path / "xdg-cache"


def make_unreadable(path: Path, monkeypatch, folder: bool = False) -> None:
    """Permission denied on ``path``: by chmod 000, or (as root, where chmod does not bind) at the system call."""
    if not IS_ROOT:
        path.chmod(0)
        return
    original = corpus_module.scandir if folder else corpus_module._open_fd

    def denied(target, *args):
        if Path(target) == path:
            raise PermissionError(errno.EACCES, "Permission denied", str(target))
        return original(target, *args)

    monkeypatch.setattr(corpus_module, "scandir" if folder else "_open_fd", denied)


def test_the_zoo_is_skipped_with_reasons_and_the_good_files_kept(chorale_files, tmp_path, monkeypatch):
    folder = tmp_path / "zoo"
    skip, keep, bounded = build_zoo(folder, chorale_files)
    (folder / "locked").mkdir()
    shutil.copy(chorale_files[5], folder / "locked" / "hidden.mid")
    make_unreadable(folder / "locked", monkeypatch, folder=True)
    skip["locked"] = "unreadable folder (Permission denied)"
    shutil.copy(chorale_files[6], folder / "unreadable.mid")
    make_unreadable(folder / "unreadable.mid", monkeypatch)
    skip["unreadable.mid"] = "unreadable (Permission denied)"
    assert len(skip) >= 40
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        result = run_tokenize(folder, "--out", tmp_path / "tok", "--jobs", "1")
    finally:
        (folder / "locked").chmod(0o755)
        (folder / "unreadable.mid").chmod(0o644)
    # the 3 GB sparse file and the 64 MB zip bomb were never read whole (ru_maxrss is in KiB)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 400_000
    assert result.exit_code == 0, result.output
    reasons = skipped_lines(result.output, folder)
    wrong = [f"{name}: {reasons.get(name)!r} does not say {want!r}" for name, want in skip.items() if want.lower() not in reasons.get(name, "").lower()]
    assert not wrong, "\n".join(wrong) + "\n" + result.output
    assert all("\n" not in r and len(r) < 300 and "unexpected" not in r for r in reasons.values()), reasons
    assert set(reasons) == set(skip), set(reasons) ^ set(skip)
    corpus = TokenCorpus.load(tmp_path / "tok")
    kept = {Path(p.source).relative_to(folder).as_posix(): t for p, t in zip(corpus.pieces, corpus.tokens)}
    assert set(kept) == set(keep) | set(bounded), set(kept) ^ (set(keep) | set(bounded))
    for name, most in bounded.items():
        assert 4 <= len(kept[name]) <= most, (name, len(kept[name]))  # BOS, a note, EOS at least
    files, skipped = (int(x) for x in FILES.search(result.output).groups())
    assert (files, skipped) == (len(skip) + len(kept), len(skip))


def test_an_unreadable_file_is_not_cached_as_bad(chorale_files, tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    for path in chorale_files[:3]:
        shutil.copy(path, folder)
    victim = folder / chorale_files[0].name
    with monkeypatch.context() as patch:
        make_unreadable(victim, patch)
        try:
            first = run_tokenize(folder, "--out", tmp_path / "t1", "--jobs", "1")
        finally:
            victim.chmod(0o644)
    assert first.exit_code == 0 and f"skipped {victim}: unreadable (Permission denied)" in first.output, first.output
    second = run_tokenize(folder, "--out", tmp_path / "t2", "--jobs", "1")
    assert second.exit_code == 0 and not skipped_lines(second.output, folder), second.output
    # the two readable files come from the cache; the once-unreadable one is read now, not remembered as bad
    assert FILES.search(second.output).groups() == ("3", "0") and "cached: 2" in second.output, second.output
    assert len(TokenCorpus.load(tmp_path / "t2").pieces) == 3


def test_a_fifo_or_loop_named_on_the_command_line_gets_a_reason(chorale_files, tmp_path):
    os.mkfifo(tmp_path / "pipe.mid")
    os.symlink("self.mid", tmp_path / "self.mid")
    result = run_tokenize(tmp_path / "pipe.mid", tmp_path / "self.mid", chorale_files[0], "--out", tmp_path / "tok", "--jobs", "1")
    assert result.exit_code == 0, result.output
    assert f"skipped {tmp_path / 'pipe.mid'}: a FIFO (named pipe), not a regular file" in result.output
    assert f"skipped {tmp_path / 'self.mid'}: symbolic link loop" in result.output


def test_only_unusable_paths_is_one_line_error(tmp_path):
    os.mkfifo(tmp_path / "pipe.mid")
    result = run_tokenize(tmp_path / "pipe.mid", "--out", tmp_path / "tok")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no usable music" in errors[0] and "FIFO" in errors[0], result.output


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_out_that_is_a_file_is_one_line_error(chorale_files, tmp_path, where):
    blocker = tmp_path / "existing.txt"
    blocker.write_text("keep me")
    out = blocker if where == "file" else blocker / "tok"
    result = run_tokenize(chorale_files[0], "--out", out)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "is a file, not a folder" in lines[0], result.output
    assert blocker.read_text() == "keep me"


def test_piece_limits_are_options(chorale_files, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for path in chorale_files[:4]:
        shutil.copy(path, folder)
    lengths = {p.name: max(n.start for n in read_piece(p).notes) for p in chorale_files[:4]}
    limit = sorted(lengths.values())[1] + 0.5  # two pieces fit, two do not
    result = run_tokenize(folder, "--out", tmp_path / "q", "--jobs", "1", "--max-quarters", str(limit))
    reasons = skipped_lines(result.output, folder)
    assert set(reasons) == {n for n, q in lengths.items() if q > limit}, result.output
    assert all(f"over the {limit:,g}-quarter limit" in r for r in reasons.values()), reasons
    sizes = sorted(len(t) for t in TokenCorpus.load(tmp_path / "q").tokens)
    result = run_tokenize(folder, "--out", tmp_path / "t", "--jobs", "1", "--max-tokens", "600")
    reasons = skipped_lines(result.output, folder)
    kept = TokenCorpus.load(tmp_path / "t").tokens
    assert all(len(t) <= 600 for t in kept) and len(kept) + len(reasons) == 4, result.output
    assert all(re.fullmatch(r"[\d,]+ tokens, over the 600-token limit per piece", r) for r in reasons.values()), reasons
    assert sizes  # the first run kept something
    result = run_tokenize(folder, "--out", tmp_path / "x", "--max-tokens", "0")
    assert result.exit_code == 1 and "must be positive" in result.output


# ---- the readers, one by one ----------------------------------------------------------------------


def test_long_silences_shrink_and_held_notes_do_not(tmp_path):
    notes = [Note(60, 0.0, 1.0), Note(62, 1000.0, 1.0), Note(64, 1001.0, 12.0), Note(65, 1023.0, 1.0), Note(67, 1e9, 1e12), Note(69, 2e12, 1.0)]
    out = collapse_silences(notes, 16.0)
    # each silence is measured from the end of what sounds (a note counts for 16 quarters at most)
    assert [n.start for n in out] == [0.0, 17.0, 18.0, 40.0, 57.0, 89.0]
    assert [(n.pitch, n.duration) for n in out] == [(n.pitch, n.duration) for n in notes]
    real = [Note(60, 0.0, 12.0), Note(62, 27.0, 1.0)]  # 12 quarters held, then 15 of rest: kept as written
    assert collapse_silences(real, 16.0) == real


def test_a_piece_too_long_is_refused_by_quarters_not_memory(tmp_path):
    path = tmp_path / "long.mid"
    events = []
    for i in range(300):
        events += note(60, 1, delta=10 if i else 0)
    path.write_bytes(smf(events, division=1))
    assert max(n.start for n in read_piece(path).notes) == pytest.approx(299 * 11)
    with pytest.raises(UnusableFile, match=r"^3,289 quarters long \(silences shrunk\), over the 1,000-quarter limit$"):
        read_piece(path, Limits(max_quarters=1000))


@pytest.mark.parametrize(
    "event, reason",
    [
        (meta(0x51, b"\x00\x00\x00"), "absurd tempo of 0 µs per quarter (infinitely fast)"),
        (meta(0x58, bytes([4, 255, 24, 8])), "absurd time signature 4/2^255"),
        (meta(0x58, bytes([0, 2, 24, 8])), "absurd time signature 0/4"),
        (meta(0x58, bytes([200, 2, 24, 8])), "absurd time signature 200/4"),
    ],
)
def test_absurd_metadata_is_refused_also_as_a_primer(event, reason, tmp_path):
    from composer.generate import primer_from_file

    path = tmp_path / "primer.mid"
    path.write_bytes(smf([event] + melody()))
    with pytest.raises(UnusableFile) as caught:
        read_piece(path)
    assert str(caught.value) == reason
    with pytest.raises(ComposerError) as caught:
        primer_from_file(path, 2, VOCAB)
    assert str(caught.value) == f"{path}: {reason}"


def test_ordinary_metres_and_tempi_are_kept(tmp_path):
    for signature in ([3, 2], [6, 3], [5, 3], [12, 3], [2, 1], [7, 4]):
        path = tmp_path / "metre.mid"
        path.write_bytes(smf([meta(0x58, bytes(signature + [24, 8])), meta(0x51, (500_000).to_bytes(3, "big"))] + melody()))
        piece = read_piece(path)
        assert piece.time_signature == f"{signature[0]}/{2 ** signature[1]}" and piece.tempo == pytest.approx(120)


def test_a_zip_bomb_is_stopped_at_the_limit_not_decompressed(tmp_path):
    path = tmp_path / "bomb.mxl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("score.musicxml", "w", force_zip64=True) as member:
            for _ in range(12):
                member.write(b" " * (1 << 20))
    assert path.stat().st_size < 100_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(UnusableFile, match="decompresses to over the 2 MB size limit"):
        read_piece(path, Limits(max_bytes=2_000_000))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB


def test_a_huge_sparse_file_is_skipped_by_its_size_without_reading(tmp_path, monkeypatch):
    path = tmp_path / "sparse.mid"
    with open(path, "wb") as f:
        f.truncate(3_000_000_000)
    reads = []
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *a, **k: reads.append(a) or real_fdopen(*a, **k))
    with pytest.raises(UnusableFile, match="^3 GB is over the 10 MB size limit$"):
        read_piece(path)
    assert not reads


# ---- fuzzing --------------------------------------------------------------------------------------


ODD_METAS = [0x00, 0x01, 0x03, 0x20, 0x21, 0x51, 0x54, 0x58, 0x59, 0x7F, 0x60, 0x0F]


def random_midi(rng: random.Random) -> bytes:
    """A structurally valid MIDI file with random timing, tracks and odd meta events."""
    division = rng.choice([1, 2, 3, 24, 96, 480, 960, 0x7FFF])
    tracks = []
    for _ in range(rng.randint(1, 3)):
        events = []
        for _ in range(rng.randint(0, 40)):
            delta = rng.choice([0, 1, rng.randint(0, division * 4), rng.randint(0, 0x0FFFFFFF)])
            roll = rng.random()
            if roll < 0.55:
                channel = rng.choice([0, 1, 9, rng.randint(0, 15)])
                pitch = rng.randint(0, 127)
                events.append(vlq(delta) + bytes([0x90 | channel, pitch, rng.randint(0, 127)]))
                events.append(vlq(rng.choice([0, 1, rng.randint(0, division * 8), rng.randint(0, 0x0FFFFFFF)])) + bytes([0x80 | channel, pitch, 0]))
            elif roll < 0.8:
                kind = rng.choice(ODD_METAS)
                size = {0x51: 3, 0x58: 4, 0x59: 2, 0x54: 5, 0x00: 2, 0x20: 1, 0x21: 1}.get(kind, rng.randint(0, 20))
                data = bytes(rng.randint(0, 255) for _ in range(size))
                if kind == 0x59 and rng.random() < 0.8:  # mostly a key mido can name, so that files get through
                    data = bytes([rng.randint(-7, 7) & 0xFF, rng.randint(0, 1)])
                if kind == 0x54 and rng.random() < 0.8:
                    data = bytes([rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59), rng.randint(0, 24), rng.randint(0, 99)])
                if rng.random() < 0.02:
                    data = data[: rng.randint(0, len(data))]  # a wrong length for the kind
                events.append(meta(kind, data, delta))
            elif roll < 0.9:
                data = bytes(rng.randint(0, 127) for _ in range(rng.randint(0, 10)))
                events.append(vlq(delta) + b"\xf0" + vlq(len(data) + 1) + data + b"\xf7")
            else:
                events.append(vlq(delta) + bytes([0xB0 | rng.randint(0, 15), rng.randint(0, 127), rng.randint(0, 127)]))
        tracks.append(chunk(b"MTrk", b"".join(events) + b"\x00\xff\x2f\x00"))
    return chunk(b"MThd", struct.pack(">HHh", 1, len(tracks), division)) + b"".join(tracks)


def fuzz_files(folder: Path, seeds: list[bytes], count: int, seed: int = 0) -> list[Path]:
    """``count`` fuzzed files from a seeded generator: byte flips and truncations of the seed
    files, spliced chunks, and random structurally valid MIDI; the same seed gives the same bytes."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        kind = i % 4
        base = bytearray(rng.choice(seeds))
        if kind == 0:  # byte flips
            for _ in range(rng.randint(1, 12)):
                base[rng.randrange(len(base))] = rng.randrange(256)
            data = bytes(base)
        elif kind == 1:  # truncation, sometimes with flips
            data = bytes(base[: rng.randint(0, len(base))])
            if data and rng.random() < 0.5:
                data = bytearray(data)
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
                data = bytes(data)
        elif kind == 2:
            data = random_midi(rng)
        else:  # a random slice of one file spliced into another
            other = rng.choice(seeds)
            a, b = sorted(rng.randrange(len(other)) for _ in range(2))
            at = rng.randrange(len(base))
            data = bytes(base[:at]) + other[a:b] + bytes(base[at:])
        path = folder / f"fuzz{i:05d}.mid"
        path.write_bytes(data)
        paths.append(path)
    return paths


def test_fuzzed_files_never_escape(chorale_files, tmp_path):
    seeds = [p.read_bytes() for p in chorale_files[:6]] + [smf(melody()), smf(melody(), division=1)]
    folder = tmp_path / "fuzz"
    paths = fuzz_files(folder, seeds, 320, seed=1234)
    assert fuzz_files(tmp_path / "again", seeds, 5, seed=1234)[0].read_bytes() == paths[0].read_bytes()
    good = folder / "good"
    good.mkdir()
    for path in chorale_files[10:13]:
        shutil.copy(path, good)
    result = run_tokenize(folder, "--out", tmp_path / "tok", "--jobs", "1")
    assert result.exit_code == 0, result.output[-2000:]
    reasons = skipped_lines(result.output, folder)
    assert all(r.strip() and "unexpected" not in r and len(r) < 300 for r in reasons.values()), {k: v for k, v in reasons.items() if "unexpected" in v}
    corpus = TokenCorpus.load(tmp_path / "tok")
    kept = {Path(p.source).relative_to(folder).as_posix(): t for p, t in zip(corpus.pieces, corpus.tokens)}
    assert {f"good/{p.name}" for p in chorale_files[10:13]} <= set(kept)
    assert set(kept) | set(reasons) == {p.relative_to(folder).as_posix() for p in folder.rglob("*.mid")}
    assert not set(kept) & set(reasons)
    assert 0 < len(reasons) < 320 and len(kept) > 3  # both outcomes occur: the fuzzer reaches the reader
    for tokens in kept.values():
        assert len(tokens) <= DEFAULT_MAX_TOKENS
        notes = decode_tokens(tokens, VOCAB)
        assert max(n.start for n in notes) <= DEFAULT_MAX_QUARTERS
        onsets = np.unique([n.start for n in notes])
        assert np.all(np.diff(onsets) <= 2 * 16 + 0.1)  # no silence longer than 4 bars survives
    assert not math.isnan(sum(p.tempo for p in corpus.pieces))


# ---- symusic against mido -------------------------------------------------------------------------


def two_tracks(first: list[bytes], second: list[bytes], tracks: int = 2) -> bytes:
    """A format-1 file of two tracks (``tracks`` is what its header claims)."""
    header = chunk(b"MThd", struct.pack(">HHh", 1, tracks, 480))
    return header + chunk(b"MTrk", b"".join(first) + b"\x00\xff\x2f\x00") + chunk(b"MTrk", b"".join(second) + b"\x00\xff\x2f\x00")


AGREEING = {
    "velocity_0_is_a_release": smf([b"\x00\x90\x3c\x40", b"\x60\x90\x3c\x00", b"\x00\x90\x3e\x50", b"\x60\x3e\x00"]),
    # struck three times before the releases: first on, first off
    "overlapping_same_pitch": smf([b"\x00\x90\x3c\x40", b"\x10\x90\x3c\x50", b"\x10\x80\x3c\x00", b"\x10\x90\x3c\x60", b"\x10\x80\x3c\x00", b"\x10\x80\x3c\x00"]),
    "same_pitch_two_channels": smf([b"\x00\x90\x3c\x40", b"\x00\x91\x3c\x40", b"\x10\x81\x3c\x00", b"\x10\x80\x3c\x00"]),
    "drum_channel_dropped": smf([b"\x00\x99\x24\x40", b"\x00\x90\x3c\x40", b"\x60\x89\x24\x00", b"\x00\x80\x3c\x00"]),
    "released_where_struck_dropped": smf([b"\x00\x90\x3c\x40", b"\x00\x80\x3c\x00", b"\x00\x90\x3e\x40", b"\x60\x80\x3e\x00"]),
    "never_released_dropped": smf([b"\x00\x90\x3c\x40", b"\x00\x90\x3e\x40", b"\x60\x80\x3e\x00"]),
    "release_in_another_track_ignored": two_tracks([b"\x00\x90\x3c\x40"] + note(62), [b"\x60\x80\x3c\x00"] + note(64)),
    "tempo_map_over_tracks": two_tracks([meta(0x51, b"\x07\xa1\x20"), meta(0x51, b"\x06\x1a\x80", 960)] + melody(), [meta(0x51, b"\x09\x27\xc0", 480)] + melody()),
    "metres_over_tracks": two_tracks([meta(0x58, bytes([3, 2, 24, 8]), 960)] + melody(), [meta(0x58, bytes([6, 3, 24, 8]))] + melody()),
    "running_status_over_a_meta": smf([b"\x00\x90\x3c\x40", meta(0x05, b"la"), b"\x60\x3c\x00"] + melody()),
    "known_meta_after_a_delay": smf(note(60) + [meta(0x01, b"text", 100)] + note(62, delta=10)),
    "odd_resolution": smf(melody(division=7), division=7),
    "extra_chunk_after_the_tracks": smf(melody()) + chunk(b"XTRA", b"anything"),
    "a_chorale": (CHORALES / "bwv101_7.mid").read_bytes(),
}


@pytest.mark.parametrize("name", sorted(AGREEING))
def test_symusic_reads_midi_details_as_mido(name):
    data = AGREEING[name]
    assert symusic_reads_as_mido(data) and symusic_events(data) is not None  # the fast path, no fallback
    fast, reference = read_midi(data), read_midi_mido(data)
    assert (fast.notes, fast.tempo, fast.time_signature, fast.key, fast.meta) == (
        reference.notes, reference.tempo, reference.time_signature, reference.key, reference.meta)


DIFFERING = {
    # mido gives a meta type it does not know a delta time of 0; symusic keeps the 100 ticks
    "unknown_meta_after_a_delay": smf(note(60) + [meta(0x08, b"piano", 100)] + note(62, delta=10)),
    "notes_after_end_of_track": smf([b"\x00\xff\x2f\x00"] + melody()),
    "header_claims_more_tracks": two_tracks(melody(), melody(), tracks=3),
    "chunk_that_is_not_a_track": chunk(b"MThd", struct.pack(">HHh", 1, 2, 480)) + chunk(b"XTRA", b"abc") + smf(melody())[14:],
    "five_byte_delta": smf(note(60) + [b"\x81\x80\x80\x80\x00\x90\x3e\x40", b"\x10\x80\x3e\x00"]),
    "denominator_2pow32": smf([meta(0x58, bytes([4, 32, 24, 8]))] + melody()),
    "short_tempo": smf([meta(0x51, b"\x07\xa1")] + melody()),
    "short_metre": smf([meta(0x58, bytes([3, 2, 24]))] + melody()),
    "bad_key": smf([meta(0x59, bytes([30, 7]))] + melody()),
    "empty_key_last_in_its_track": smf(melody() + [meta(0x59, b"")], end=False),
    "bad_smpte_offset": smf([meta(0x54, bytes([0, 0, 61, 0, 0]))] + melody()),
    # past 2**31 ticks symusic's int32 times wrap round to negative ones
    "ticks_past_int32": smf(sum((note(60 + i, 1, delta=0x0FFFFFFF) for i in range(12)), []), division=1),
}


@pytest.mark.parametrize("name", sorted(DIFFERING))
def test_where_symusic_would_differ_mido_reads(name):
    """Each known difference is caught and read by mido: the same piece, or the same reason."""
    data = DIFFERING[name]
    assert not symusic_reads_as_mido(data) or symusic_events(data) is None

    def outcome(reader):
        try:
            piece = reader(data)
        except UnusableFile as error:
            return str(error)
        return piece.notes, piece.meta

    assert outcome(read_midi) == outcome(read_midi_mido)
    unguarded = symusic_events(data)  # symusic alone: refuses, or reads the file otherwise
    assert unguarded is None or outcome(lambda _: midi_piece(*unguarded)) != outcome(read_midi_mido)


def test_fuzzed_midi_reads_as_mido_wherever_mido_reads_it(chorale_files, tmp_path):
    """On fuzzed files the fast reader keeps every file mido keeps, with the same notes, and
    skips every file mido skips with mido's reason, except a few that mido refuses for damage
    symusic passes over (a data byte over 127 in an aftertouch, a system message in a track)."""
    seeds = [p.read_bytes() for p in chorale_files[:6]] + [smf(melody()), smf(melody(), division=1)]
    outcomes = {"same": 0, "kept, mido refused": 0}
    for path in fuzz_files(tmp_path, seeds, 800, seed=77):
        data = path.read_bytes()
        try:
            reference = read_midi_mido(data)
        except UnusableFile as error:
            reference = str(error)
        try:
            fast = read_midi(data)
        except UnusableFile as error:
            assert str(error) == reference, path.name  # refused only through mido, with its reason
            outcomes["same"] += 1
            continue
        if isinstance(reference, str):
            outcomes["kept, mido refused"] += 1
            continue
        assert (fast.notes, fast.meta) == (reference.notes, reference.meta), path.name
        outcomes["same"] += 1
    assert outcomes["kept, mido refused"] <= 8, outcomes  # 0.3 % over 15,000 fuzzed files

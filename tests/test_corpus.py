"""Reading music files: metadata, drums, MusicXML, the bad-file screen, and MIDI round trips."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from composer import ComposerError
from composer.corpus import Limits, UnusableFile, estimate_key, find_music_files, read_piece, write_midi
from composer.tokens import Note, TokenizerConfig, Vocabulary, decode_tokens, encode_notes, is_grammatical

VOCAB = Vocabulary(TokenizerConfig())
CHORALES_ROOT = Path(__file__).resolve().parent.parent / "midi_data"  # every bundled MIDI file
KEY = re.compile(r"^[A-G][#-]? (major|minor)$")


def rounded(notes, places=6):
    return sorted((n.pitch, round(n.start, places), round(n.duration, places)) for n in notes)


def first_meta(path: Path):
    """Tempo (bpm) and time signature as the file states them, read with mido alone."""
    import mido

    tempo, signature = None, None
    for message in mido.merge_tracks(mido.MidiFile(str(path)).tracks):
        if message.type == "set_tempo" and tempo is None:
            tempo = mido.tempo2bpm(message.tempo)
        if message.type == "time_signature" and signature is None:
            signature = f"{message.numerator}/{message.denominator}"
    return tempo or 120.0, signature or "4/4"


# ---- real chorales ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bwv101_7.mid", "bwv11_6.mid", "bwv190_7.mid", "bwv248_23-2.mid"])
def test_metadata_of_a_real_chorale(name, chorale_files):
    path = next(f for f in chorale_files if f.name == name)
    piece = read_piece(path)
    tempo, signature = first_meta(path)
    assert piece.tempo == pytest.approx(tempo, rel=1e-3)
    assert piece.time_signature == signature
    assert KEY.match(piece.key), piece.key
    assert len(piece.notes) > 50
    assert {n.pitch for n in piece.notes} <= set(range(21, 109))
    # music21's export is on the sixteenth/triplet grid: 12 steps per quarter are exact
    steps = np.array([n.start * 12 for n in piece.notes] + [n.duration * 12 for n in piece.notes])
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-6)


def test_known_metadata_values(chorale_files):
    by_name = {f.name: f for f in chorale_files}
    assert read_piece(by_name["bwv11_6.mid"]).time_signature == "3/4"
    assert read_piece(by_name["bwv190_7.mid"]).tempo == pytest.approx(96.0)
    assert read_piece(by_name["bwv101_7.mid"]).key == "D minor"  # "Nimm von uns, Herr", D (Dorian) minor


@pytest.mark.parametrize("index", [0, 57, 123, 200, 311, 348])
def test_real_chorale_survives_midi_tokens_midi_tokens(index, chorale_files, tmp_path):
    piece = read_piece(chorale_files[index])
    tokens = encode_notes(piece.notes, VOCAB)
    assert is_grammatical(tokens, VOCAB)
    notes = decode_tokens(tokens, VOCAB)
    out = write_midi(notes, tmp_path / "again.mid", bpm=piece.tempo, time_signature=piece.time_signature)
    again = read_piece(out)
    np.testing.assert_array_equal(encode_notes(again.notes, VOCAB), tokens)
    assert rounded(again.notes) == rounded(notes)
    assert again.tempo == pytest.approx(piece.tempo) and again.time_signature == piece.time_signature
    assert again.key == piece.key


@pytest.mark.slow
def test_every_bundled_chorale_survives_the_round_trip(chorale_files, tmp_path):
    failures = []
    for path in chorale_files:
        piece = read_piece(path)
        tokens = encode_notes(piece.notes, VOCAB)
        out = write_midi(decode_tokens(tokens, VOCAB), tmp_path / "again.mid", bpm=piece.tempo)
        if not np.array_equal(encode_notes(read_piece(out).notes, VOCAB), tokens) or not is_grammatical(tokens, VOCAB):
            failures.append(path.name)
    assert not failures


# ---- MIDI details --------------------------------------------------------------------------------


def test_drums_are_dropped_and_tracks_merged(tmp_path):
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(initial_tempo=120)
    piano, strings, drums = pretty_midi.Instrument(0), pretty_midi.Instrument(48), pretty_midi.Instrument(0, is_drum=True)
    piano.notes += [pretty_midi.Note(90, 60, 0.0, 0.5), pretty_midi.Note(90, 64, 0.5, 1.0)]
    strings.notes += [pretty_midi.Note(90, 48, 0.0, 1.0)]
    drums.notes += [pretty_midi.Note(100, p, t, t + 0.1) for p, t in ((36, 0.0), (38, 0.5), (42, 0.25), (77, 0.75))]
    midi.instruments += [piano, drums, strings]
    midi.write(str(tmp_path / "band.mid"))
    piece = read_piece(tmp_path / "band.mid")
    assert rounded(piece.notes) == [(48, 0.0, 2.0), (60, 0.0, 1.0), (64, 1.0, 1.0)]


def test_tempo_changes_map_seconds_to_quarters(tmp_path):
    import mido

    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(120), time=0))
    track.append(mido.MetaMessage("time_signature", numerator=3, denominator=4, time=0))
    for i in range(8):  # a quarter note on every beat; the tempo halves after beat 4
        if i == 4:
            track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(60), time=0))
        track.append(mido.Message("note_on", note=60 + i, velocity=80, time=0))
        track.append(mido.Message("note_off", note=60 + i, velocity=0, time=480))
    mid.save(str(tmp_path / "tempo.mid"))
    piece = read_piece(tmp_path / "tempo.mid")
    assert rounded(piece.notes) == [(60 + i, float(i), 1.0) for i in range(8)]
    assert piece.tempo == pytest.approx(120.0) and piece.time_signature == "3/4"
    assert {n.velocity for n in piece.notes} == {80}


def test_write_midi_round_trip_is_atomic_and_exact(tmp_path):
    notes = [Note(60, 0.0, 1.0, 100), Note(64, 0.0, 0.5, 70), Note(67, 1.5, 0.25, 50), Note(72, 10.0, 8.0, 90)]
    write_midi(notes, tmp_path / "out" / "x.mid", bpm=75, time_signature="6/8")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x.mid"]  # no temporary file left behind
    piece = read_piece(tmp_path / "out" / "x.mid")
    assert rounded(piece.notes) == rounded(notes)
    assert sorted(n.velocity for n in piece.notes) == [50, 70, 90, 100]
    assert piece.tempo == pytest.approx(75) and piece.time_signature == "6/8"


def test_estimate_key_on_simple_material():
    def cadence(tonic: int, third: int) -> list[Note]:
        degrees = [0, 2, third, 5, 7, 7, 0, 0, third, 7, 0]
        return [Note(60 + tonic + d, float(i), 1.0) for i, d in enumerate(degrees)]

    assert estimate_key(cadence(0, 4)) == "C major"
    assert estimate_key(cadence(7, 4)) == "G major"
    assert estimate_key(cadence(9, 3)) == "A minor"
    assert estimate_key([]) == ""


# ---- MusicXML through music21 ----------------------------------------------------------------------


def small_score(tied: bool = False):
    from music21 import chord, meter, note, stream, tempo

    part = stream.Part()
    part.append(meter.TimeSignature("3/4"))
    part.append(tempo.MetronomeMark(number=90))
    part.append(note.Note("C4", quarterLength=1))
    part.append(chord.Chord(["E4", "G4", "C5"], quarterLength=0.5))
    part.append(note.Rest(quarterLength=0.5))
    part.append(note.Note("D4", quarterLength=0.25))
    part.append(note.Note("F#4", quarterLength=0.75))
    if tied:  # a half note on beat 3 of a 3/4 bar is written as a quarter tied over the bar line
        part.append(note.Note("B4", quarterLength=2))
        part.append(note.Note("A4", quarterLength=2))
    else:
        part.append(note.Note("G4", quarterLength=3))
    score = stream.Score()
    score.append(part)
    return score


def test_musicxml_is_read_through_music21(tmp_path):
    small_score().write("musicxml", fp=str(tmp_path / "small.musicxml"))
    piece = read_piece(tmp_path / "small.musicxml")
    assert rounded(piece.notes) == [
        (60, 0.0, 1.0), (62, 2.0, 0.25), (64, 1.0, 0.5), (66, 2.25, 0.75), (67, 1.0, 0.5), (67, 3.0, 3.0), (72, 1.0, 0.5),
    ]
    assert piece.tempo == pytest.approx(90) and piece.time_signature == "3/4"
    assert piece.key


def test_musicxml_tied_notes_are_one_note(tmp_path):
    """A tie joins two written notes into one sounding note, as MIDI export of the same score does."""
    score = small_score(tied=True)
    score.write("musicxml", fp=str(tmp_path / "tied.musicxml"))
    score.write("midi", fp=str(tmp_path / "tied.mid"))
    from_xml = read_piece(tmp_path / "tied.musicxml")
    assert (69, 5.0, 2.0) in rounded(from_xml.notes)
    assert rounded(from_xml.notes) == rounded(read_piece(tmp_path / "tied.mid").notes)


def test_unreadable_musicxml_is_skipped_with_a_reason(tmp_path):
    (tmp_path / "broken.xml").write_text("<score-partwise><part id='P1'><measure")
    with pytest.raises(UnusableFile, match="music21"):
        read_piece(tmp_path / "broken.xml")


# ---- the bad-file screen ---------------------------------------------------------------------------


def test_bad_files_are_rejected_with_the_right_one_line_reason(bad_files, tmp_path):
    wrong = []
    for name, expected in bad_files.items():
        try:
            piece = read_piece(tmp_path / "bad" / name)
            wrong.append(f"{name}: accepted with {len(piece.notes)} notes")
        except UnusableFile as error:
            reason = str(error)
            if expected.lower() not in reason.lower() or "\n" in reason:
                wrong.append(f"{name}: {reason!r} does not say {expected!r}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("division", [0, -(0x10000 - 0xE728)], ids=["zero", "smpte-25fps"])
def test_unusable_time_division_is_reported_as_resolution(division, chorale_files, tmp_path):
    real = chorale_files[0].read_bytes()
    path = tmp_path / "division.mid"
    path.write_bytes(real[:12] + division.to_bytes(2, "big", signed=True) + real[14:])
    with pytest.raises(UnusableFile, match="resolution"):
        read_piece(path)


def test_size_limit(chorale_files):
    path = chorale_files[0]
    assert read_piece(path, Limits(max_bytes=path.stat().st_size)).notes
    with pytest.raises(UnusableFile, match="size limit"):
        read_piece(path, Limits(max_bytes=1000))


def test_unknown_file_type(tmp_path):
    (tmp_path / "notes.txt").write_text("C D E")
    with pytest.raises(UnusableFile, match="unknown file type"):
        read_piece(tmp_path / "notes.txt")


def test_find_music_files(tmp_path, make_midi):
    (tmp_path / "a" / "b").mkdir(parents=True)
    make_midi(tmp_path / "a" / "b" / "deep.MID")
    make_midi(tmp_path / "a" / "top.midi")
    (tmp_path / "a" / "score.musicxml").write_text("x")
    (tmp_path / "a" / "readme.txt").write_text("x")
    (tmp_path / "a" / "image.png").write_bytes(b"x")
    found = find_music_files([tmp_path / "a"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/b/deep.MID", "a/score.musicxml", "a/top.midi"]
    assert find_music_files([tmp_path / "a" / "top.midi", tmp_path / "a"]) == found  # no duplicates
    with pytest.raises(ComposerError, match="nowhere"):
        find_music_files([tmp_path / "nowhere"])


# ---- the two MIDI readers -----------------------------------------------------------------------


def test_symusic_reads_every_bundled_chorale_as_mido_does(chorale_files):
    """The fast reader (symusic) against the reference one (mido), file by file: the same notes
    in the same order, tempi, metres, key, and so the same tokens; and no chorale needs mido."""
    from composer.corpus import read_midi, read_midi_mido, screened, symusic_events, symusic_reads_as_mido

    for path in sorted(CHORALES_ROOT.rglob("*.mid")):
        data = path.read_bytes()
        assert symusic_reads_as_mido(data) and symusic_events(data) is not None, f"{path.name} fell back to mido"
        fast, reference = read_midi(data), read_midi_mido(data)
        assert fast.notes == reference.notes, path.name
        assert (fast.tempo, fast.time_signature, fast.key, fast.meta) == (reference.tempo, reference.time_signature, reference.key, reference.meta)
        tokens = encode_notes(screened(fast, Limits()).notes, VOCAB)
        assert np.array_equal(tokens, encode_notes(screened(reference, Limits()).notes, VOCAB)), path.name
    assert len(chorale_files) > 300


def test_without_symusic_every_file_is_read_by_mido(chorale_files, monkeypatch):
    """symusic is a compiled wheel some platforms lack: then mido reads, with the same notes,
    instead of every file being skipped."""
    import sys

    from composer.corpus import read_midi, read_midi_mido

    path = sorted(CHORALES_ROOT.rglob("*.mid"))[0]
    expected = read_midi_mido(path.read_bytes())
    monkeypatch.setitem(sys.modules, "symusic", None)  # import symusic now raises ImportError
    piece = read_piece(path)
    assert len(piece.notes) > 50 and list(piece.notes) == list(expected.notes)
    assert read_midi(path.read_bytes()).meta == expected.meta

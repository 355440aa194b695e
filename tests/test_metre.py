"""Metres that change: read with their positions, written back to MIDI and MusicXML, bars
counted across them; and the folk-like long notes the finer grid and ties hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.corpus import Limits, read_midi, read_midi_mido, read_piece, write_midi
from composer.generate import Primer, primer_from_file
from composer.metre import bar_quarters, bars, bars_end, changes_before, metre_at, metre_changes
from composer.tokens import FINE_BEAT_RES, Note, TokenizerConfig, Vocabulary, decode_tokens, encode_notes

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "outputs" / "bach-small-reference"
# 2 bars of 4/4, 2 of 3/4, then 6/8 (3 quarters a bar)
CHANGES = [(0.0, "4/4"), (8.0, "3/4"), (14.0, "6/8")]


def midi_bytes(notes: list[Note], signatures: list[tuple[float, str]], per_quarter: int = 480, tracks: int = 1) -> bytes:
    """A type-1 MIDI file written with mido: the metres in the first track (and, with
    ``tracks`` > 1, repeated in every track as some exporters do), the notes in the last."""
    import io

    import mido

    midi = mido.MidiFile(type=1, ticks_per_beat=per_quarter)
    for number in range(tracks):
        track = mido.MidiTrack()
        events = [(round(at * per_quarter), 0, mido.MetaMessage("time_signature", numerator=int(s.split("/")[0]),
                                                             denominator=int(s.split("/")[1]), time=0)) for at, s in signatures]
        if number == tracks - 1:
            for n in notes:
                events.append((round(n.start * per_quarter), 2, mido.Message("note_on", note=n.pitch, velocity=n.velocity, time=0)))
                events.append((round((n.start + n.duration) * per_quarter), 1, mido.Message("note_off", note=n.pitch, velocity=0, time=0)))
        tick = 0
        for at, _, message in sorted(events, key=lambda e: (e[0], e[1])):
            track.append(message.copy(time=at - tick))
            tick = at
        midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def changing_notes() -> list[Note]:
    """A note on every beat: 4 + 4 in 4/4, 3 + 3 in 3/4, then dotted quarters in 6/8."""
    starts = [float(q) for q in range(14)] + [14.0 + 1.5 * k for k in range(8)]
    return [Note(60 + (i % 12), start, 1.0 if start < 14 else 1.5) for i, start in enumerate(starts)]


def test_metre_changes_normalise_what_readers_find():
    assert metre_changes([]) == [(0.0, "4/4")]
    # one per track, repeats, a change at the start of the piece that is no change
    found = [(0, "4/4"), (8, "3/4"), (0, "4/4"), (8, "3/4"), (14, "6/8"), (17, "6/8")]
    assert metre_changes(found) == CHANGES
    assert metre_changes([(2.0, "3/4"), (2.0, "2/4"), (5.0, "2/4")]) == [(0.0, "3/4"), (5.0, "2/4")]


def test_bars_follow_the_changes_and_a_change_cuts_a_bar_short():
    assert [(s, l) for s, l, _ in bars(CHANGES, 20.0)] == [(0, 4), (4, 4), (8, 3), (11, 3), (14, 3), (17, 3)]
    assert bars([(0.0, "4/4"), (6.0, "3/4")], 9.0) == [(0.0, 4.0, "4/4"), (4.0, 2.0, "4/4"), (6.0, 3.0, "3/4")]
    assert bars([(0.0, "4/4")], 0.0) == [(0.0, 4.0, "4/4")]
    assert [bars_end(CHANGES, n) for n in (1, 2, 3, 4, 5, 2.5)] == [4.0, 8.0, 11.0, 14.0, 17.0, 9.5]
    assert metre_at(CHANGES, 8.0) == "3/4" and metre_at(CHANGES, 7.5) == "4/4" and metre_at(CHANGES, 99) == "6/8"
    assert changes_before(CHANGES, 11.0) == CHANGES[:2]


@pytest.mark.parametrize("tracks", [1, 3])
def test_both_midi_readers_keep_the_changes_with_their_positions(tracks):
    data = midi_bytes(changing_notes(), CHANGES, tracks=tracks)
    fast, reference = read_midi(data), read_midi_mido(data)
    assert fast.meta["metre"] == reference.meta["metre"] == CHANGES
    assert fast.time_signature == "4/4"


def test_a_shrunk_silence_moves_the_changes_with_the_notes(tmp_path):
    # 40 quarters of rest before the 3/4 section: shrunk to 16, and the change with it
    notes = [Note(60, 0.0, 4.0), Note(62, 44.0, 3.0)]
    path = tmp_path / "gap.mid"
    path.write_bytes(midi_bytes(notes, [(0.0, "4/4"), (44.0, "3/4")]))
    piece = read_piece(path, Limits(max_silence=16.0))
    assert [n.start for n in piece.notes] == [0.0, 20.0]
    assert piece.meta["metre"] == [(0.0, "4/4"), (20.0, "3/4")]
    # two changes inside the silence: the later one is the metre the music resumes in
    path.write_bytes(midi_bytes(notes, [(0.0, "4/4"), (30.0, "2/4"), (40.0, "3/4")]))
    assert read_piece(path, Limits(max_silence=16.0)).meta["metre"] == [(0.0, "4/4"), (20.0, "3/4")]


def test_write_midi_round_trips_the_changes(tmp_path):
    notes = changing_notes()
    path = write_midi(notes, tmp_path / "out.mid", bpm=90.0, time_signatures=CHANGES, end=20.0)
    piece = read_piece(path)
    assert piece.meta["metre"] == CHANGES
    # the default is unchanged: one metre
    plain = read_piece(write_midi(notes, tmp_path / "plain.mid", time_signature="3/4"))
    assert plain.meta["metre"] == [(0.0, "3/4")]


def measure_lengths(path: Path) -> tuple[list[float], dict[int, str]]:
    """Each measure's length in quarters (the top staff, as music21 re-reads the file) and the
    measure numbers where a time signature is written."""
    import music21

    part = music21.converter.parse(str(path), forceSource=True).parts[0]
    measures = list(part.getElementsByClass("Measure"))
    shown = {m.number: m.timeSignature.ratioString for m in measures if m.timeSignature is not None}
    return [float(m.duration.quarterLength) for m in measures], shown


def test_musicxml_bar_lines_follow_the_changes(tmp_path):
    from composer.score import write_musicxml

    path = write_musicxml(changing_notes(), tmp_path / "out.musicxml", None, bpm=90.0, time_signatures=CHANGES)
    lengths, shown = measure_lengths(path)
    assert lengths == [4, 4, 3, 3, 3, 3, 3, 3]
    assert shown == {1: "4/4", 3: "3/4", 5: "6/8"}
    again = read_piece(path)
    assert again.meta["metre"] == CHANGES  # music21's reader keeps them too
    assert [(n.start, n.duration) for n in again.notes] == [(n.start, n.duration) for n in changing_notes()]


def test_a_primer_counts_its_bars_across_the_changes(tmp_path):
    path = tmp_path / "changing.mid"
    path.write_bytes(midi_bytes(changing_notes(), CHANGES))
    vocab = Vocabulary()
    three = primer_from_file(path, 3, vocab)
    assert (three.end, three.time_signature, three.metre) == (11.0, "3/4", CHANGES[:2])
    assert max(n.start for n in decode_tokens(three.tokens, vocab)) == 10.0
    five = primer_from_file(path, 5, vocab)
    assert (five.end, five.time_signature) == (17.0, "6/8")
    assert five.time_signatures() == CHANGES
    two = primer_from_file(path, 2, vocab)  # ends where 3/4 begins: continued in 3/4
    assert (two.end, two.time_signature, two.metre) == (8.0, "3/4", [])
    assert two.time_signatures() is None and Primer("x", np.array([1]), None, "4/4").time_signatures() is None


def test_generate_writes_the_primers_changes_to_midi_and_musicxml(tmp_path):
    """The reference run continues a primer of 3 bars (4/4, 4/4, 3/4) by 2 bars of 3/4: the MIDI
    file and the score hold both metres at their places (no TensorFlow: generate needs none)."""
    from composer.generate import generate

    primer = tmp_path / "changing.mid"
    primer.write_bytes(midi_bytes(changing_notes(), CHANGES))
    result = generate(REFERENCE, "150", 1, bars=2, primer=primer, primer_bars=3, out=tmp_path / "out", musicxml=True)
    (midi,), (score,) = result.paths, result.scores
    assert read_piece(midi).meta["metre"] == [(0.0, "4/4"), (8.0, "3/4")]
    lengths, shown = measure_lengths(score)
    assert lengths == [4, 4, 3, 3, 3] and shown == {1: "4/4", 3: "3/4"}
    assert max(n.start for n in read_piece(midi).notes) < 17.0
    # an asked metre holds throughout, the primer's bars included
    asked = generate(REFERENCE, "150", 1, bars=2, primer=primer, primer_bars=3, out=tmp_path / "asked", time_signature="3/4")
    assert read_piece(asked.paths[0]).meta["metre"] == [(0.0, "3/4")]


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(st.tuples(st.integers(1, 40), st.sampled_from(["4/4", "3/4", "6/8", "5/8", "2/2"])), min_size=1, max_size=5),
    end=st.integers(0, 120),
)
def test_bars_tile_the_piece_and_bars_end_finds_their_ends(steps, end):
    """Bars cover [0, end) without gaps, each at most its metre's length, starting again at every
    change; bars_end(n) is where the n-th of them ends."""
    positions = np.cumsum([0] + [s for s, _ in steps[1:]]) / 2  # halves of quarters
    changes = metre_changes(zip(positions.tolist(), [m for _, m in steps]))
    laid = bars(changes, end / 2)
    assert laid[0][0] == 0 and laid[-1][0] + laid[-1][1] >= end / 2 - 1e-9
    for (start, length, metre), following in zip(laid, laid[1:] + [None]):
        assert 0 < length <= bar_quarters(metre) + 1e-9 and metre == metre_at(changes, start)
        if following is not None:
            assert following[0] == pytest.approx(start + length)
    for n, (start, length, _) in enumerate(laid, 1):
        assert bars_end(changes, n) == pytest.approx(start + length)


# ---- long notes of folk-like music: 4.5 quarters in 9/8, notes over 8 quarters ---------------


def folk_notes() -> list[Note]:
    """8 bars of 9/8 (4.5 quarters): a melody over a bar-long chord in each, then a held
    final chord of 3 bars (13.5 quarters) and a note of 9 quarters."""
    notes = []
    for bar in range(8):
        start = 4.5 * bar
        notes += [Note(48, start, 4.5), Note(55, start, 4.5)]
        notes += [Note(72 + k % 5, start + 1.5 * k, 1.5) for k in range(3)]
    notes += [Note(48, 36.0, 13.5), Note(55, 36.0, 13.5), Note(64, 36.0, 9.0)]
    return notes


def test_folk_long_notes_change_value_on_the_default_grid_and_not_on_the_fine_one_with_ties(tmp_path):
    path = tmp_path / "slip-jig.mid"
    path.write_bytes(midi_bytes(folk_notes(), [(0.0, "9/8")]))
    notes = read_piece(path).notes
    assert read_piece(path).time_signature == "9/8"
    changed = {}
    for name, config in {
        "default": TokenizerConfig(),
        "fine": TokenizerConfig(beat_res=FINE_BEAT_RES),
        "fine+tie": TokenizerConfig(beat_res=FINE_BEAT_RES, long_notes="tie"),
    }.items():
        vocab = Vocabulary(config)
        decoded = decode_tokens(encode_notes(notes, vocab), vocab)
        assert len(decoded) == len(notes)
        changed[name] = sum(a.duration != b.duration for a, b in zip(sorted(notes, key=lambda n: (n.start, n.pitch)), decoded))
    # 16 bar-long chord notes of 4.5 quarters, and the 3 final notes over 8 quarters
    assert changed == {"default": 16 + 3, "fine": 3, "fine+tie": 0}


def test_tokenize_records_the_duration_settings_and_the_metre_changes(tmp_path):
    import json

    from typer.testing import CliRunner

    from composer.cli import app
    from composer.dataset import TokenCorpus

    folder = tmp_path / "folk"
    folder.mkdir()
    (folder / "slip-jig.mid").write_bytes(midi_bytes(folk_notes(), [(0.0, "9/8")]))
    (folder / "changing.mid").write_bytes(midi_bytes(changing_notes(), CHANGES))
    out = tmp_path / "tokens"
    result = CliRunner().invoke(app, ["tokenize", str(folder), "--out", str(out), "--jobs", "1", "--no-cache",
                                      "--fine-durations", "--tie-long-notes"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "vocab.json").read_text())["config"]
    assert config["long_notes"] == "tie" and config["beat_res"] == [list(r) for r in FINE_BEAT_RES]
    corpus = TokenCorpus.load(out)
    assert corpus.vocab == Vocabulary(TokenizerConfig(beat_res=FINE_BEAT_RES, long_notes="tie"))
    records = {Path(r.source).name: r for r in corpus.pieces}
    assert records["changing.mid"].metre() == CHANGES and records["slip-jig.mid"].metre() == [(0.0, "9/8")]
    notes = decode_tokens(corpus.tokens[corpus.pieces.index(records["slip-jig.mid"])], corpus.vocab)
    assert sorted(n.duration for n in notes)[-3:] == [9.0, 13.5, 13.5]


@pytest.mark.tensorflow
def test_train_and_generate_on_tied_fine_durations(tmp_path):
    """The whole chain on the opt-in settings: tokenize, a tiny training run (run.json records
    them), generate by tokens and by bars from a primer that changes metre."""
    import json

    from train_fixtures import invoke, train_cli

    from composer.tokens import is_grammatical

    folder = tmp_path / "folk"
    folder.mkdir()
    for shift in range(6):
        notes = [Note(n.pitch + shift, n.start, n.duration) for n in folk_notes() + [Note(67, 50.0 + k, 1.0) for k in range(8)]]
        (folder / f"tune{shift}.mid").write_bytes(midi_bytes(notes, [(0.0, "9/8")]))
    corpus = tmp_path / "tokens"
    result = invoke("tokenize", folder, "--out", corpus, "--jobs", "1", "--no-cache", "--validation", "0.3",
                    "--fine-durations", "--tie-long-notes")
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    train_cli(corpus, run, "--epochs", "2", "--save-at", "2")
    vocab = Vocabulary(TokenizerConfig(beat_res=FINE_BEAT_RES, long_notes="tie"))
    assert json.loads((run / "run.json").read_text())["vocabulary"] == vocab.to_dict()
    shown = invoke("info", run)
    assert shown.exit_code == 0 and "vocabulary 155 (tokenized with --fine-durations --tie-long-notes)," in shown.output, shown.output
    primer = tmp_path / "changing.mid"
    primer.write_bytes(midi_bytes(changing_notes(), CHANGES))
    from composer.generate import SampleSettings, generate

    by_tokens = generate(run, "2", 2, SampleSettings(tokens=80), out=tmp_path / "tokens-out")
    by_bars = generate(run, "2", 2, bars=2, primer=primer, primer_bars=3, out=tmp_path / "bars-out", musicxml=True)
    for tokens in by_tokens.tokens + by_bars.tokens:
        assert is_grammatical(tokens, vocab)
        assert np.array_equal(encode_notes(decode_tokens(tokens, vocab), vocab), tokens)
    assert all(len(t) == len(by_tokens.tokens[0]) for t in by_tokens.tokens)
    assert all(read_piece(p).meta["metre"] == [(0.0, "4/4"), (8.0, "3/4")] for p in by_bars.paths)


def test_instruments_and_tied_notes_are_refused_together(tmp_path):
    from typer.testing import CliRunner

    from composer.cli import app

    result = CliRunner().invoke(app, ["tokenize", str(tmp_path), "--out", str(tmp_path / "c"), "--instruments", "--tie-long-notes"])
    assert result.exit_code == 1 and "do not combine" in result.output and not (tmp_path / "c").exists()

"""Band music: instruments and drums from the files to the tokens, the grammar, the page and back.

The multi-instrument corpus is made here from what ships offline: Mozart string quartet
movements from music21's corpus, their four parts given instruments of four General MIDI
families, exported as multi-track MIDI (once per session), plus piano + bass + drum patterns
built by the tests.
"""

from __future__ import annotations

import json
import random
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from composer.corpus import read_midi, read_midi_mido, write_midi
from composer.tokens import (
    BOS,
    DRUM_KEYS,
    DRUMS,
    EOS,
    INSTRUMENTS,
    Grammar,
    Kind,
    Note,
    TokenizerConfig,
    Vocabulary,
    count_notes,
    decode_tokens,
    encode_notes,
    instrument_of,
    is_grammatical,
)
from test_tokens import random_walk  # the grammar's random walk, shared with the plain vocabulary's tests

BAND = TokenizerConfig(instruments=True)
VOCAB = Vocabulary(BAND)
PLAIN = Vocabulary()
# the programs Program tokens are written back as: a note of one of these keeps its program exactly
WRITTEN_BACK = {program for _, program in INSTRUMENTS[:DRUMS]}
QUARTET = ("mozart/k155/movement2.mxl", "mozart/k80/movement3.mxl")
QUARTET_PROGRAMS = (40, 73, 56, 33)  # violin, flute, trumpet, electric bass: four families


def names(tokens, vocab=VOCAB) -> list[str]:
    table = vocab.names()
    return [table[int(t)] for t in tokens]


def ids(token_names, vocab=VOCAB) -> list[int]:
    table = vocab.names()
    return [table.index(n) for n in token_names]


def band_notes(bars: int = 4, offset: int = 0) -> list[Note]:
    """Piano chords, a bass line and a rock beat (kick, snare, closed hi-hat), on the grid."""
    notes = []
    for beat in range(4 * bars):
        root = (48, 53, 55, 48)[(beat // 4 + offset) % 4]
        if beat % 2 == 0:
            notes += [Note(root + 12 + i, beat, 2.0, 80, 0) for i in (0, 4, 7)]
        notes.append(Note(root - 12, beat, 0.5, 90, 33))
        notes.append(Note(36 if beat % 2 == 0 else 38, beat, 0.25, 100, 0, True))
        notes += [Note(42, beat + half, 0.25, 70, 0, True) for half in (0.0, 0.5)]
    return notes


def pretty_band_file(path: Path, notes: list[Note], bpm: float = 120.0) -> Path:
    """A multi-track MIDI file written by pretty_midi itself (one instrument per program and
    drum flag), independent of composer's writer."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    tracks = {}
    seconds = 60.0 / bpm
    for n in notes:
        key = (n.drum, n.program)
        if key not in tracks:
            tracks[key] = pretty_midi.Instrument(program=n.program, is_drum=n.drum)
        tracks[key].notes.append(pretty_midi.Note(n.velocity, n.pitch, n.start * seconds, (n.start + n.duration) * seconds))
    midi.instruments.extend(tracks.values())
    midi.write(str(path))
    return path


def sorted_notes(notes) -> list[tuple]:
    return sorted((n.start, instrument_of(n.program, n.drum), n.pitch, n.program, n.drum, n.duration) for n in notes)


@pytest.fixture(scope="session")
def band_folder(tmp_path_factory) -> Path:
    """A folder of multi-instrument music: two quartet movements in four GM families, exported by
    music21 as multi-track MIDI, and two piano + bass + drums patterns."""
    from music21 import corpus, instrument

    folder = tmp_path_factory.mktemp("band")
    kinds = (instrument.Violin, instrument.Flute, instrument.Trumpet, instrument.ElectricBass)
    for work in QUARTET:
        score = corpus.parse(work, forceSource=True)
        for part, kind in zip(score.parts, kinds):
            for old in list(part.recurse().getElementsByClass("Instrument")):
                part.remove(old, recurse=True)
            part.insert(0, kind())
        score.write("midi", fp=str(folder / (work.replace("/", "_").removesuffix(".mxl") + ".mid")))
    for k in range(2):
        pretty_band_file(folder / f"beat{k}.mid", band_notes(8, offset=k))
    return folder


# ---- reading and round trips ----------------------------------------------------------------------


def test_piano_bass_drums_round_trip_through_both_readers_tokens_and_the_writer(tmp_path):
    notes = band_notes()
    data = pretty_band_file(tmp_path / "band.mid", notes).read_bytes()
    fast, reference = read_midi(data, instruments=True), read_midi_mido(data, instruments=True)
    assert list(fast.notes) == list(reference.notes)
    assert sorted_notes(fast.notes) == sorted_notes(notes)
    tokens = encode_notes(fast.notes, VOCAB)
    assert is_grammatical(tokens, VOCAB) and count_notes(tokens, VOCAB) == len(notes)
    decoded = decode_tokens(tokens, VOCAB)
    # every note keeps program, drum flag, pitch and onset; pitched notes their duration too
    key = lambda n: (n.start, n.drum, n.program, n.pitch)  # noqa: E731
    assert sorted(map(key, decoded)) == sorted(map(key, notes))
    assert sorted((key(n), n.duration) for n in decoded if not n.drum) == sorted((key(n), n.duration) for n in notes if not n.drum)
    assert all(0 < n.duration <= 0.25 for n in decoded if n.drum)
    np.testing.assert_array_equal(encode_notes(decoded, VOCAB), tokens)

    import mido
    import pretty_midi

    written = write_midi(decoded, tmp_path / "again.mid", bpm=fast.tempo)
    midi = pretty_midi.PrettyMIDI(str(written))
    assert sorted((int(i.program), i.is_drum, len(i.notes)) for i in midi.instruments) == [
        (0, False, sum(1 for n in notes if n.program == 0 and not n.drum)),
        (0, True, sum(n.drum for n in notes)),
        (33, False, sum(n.program == 33 for n in notes)),
    ]
    channels = {(m.channel, m.note) for track in mido.MidiFile(written).tracks for m in track if m.type == "note_on"}
    assert {key for c, key in channels if c == 9} == {36, 38, 42}  # the drums on channel 10 ...
    assert not {key for c, key in channels if c != 9} & {38, 42}  # ... and only there
    assert sorted_notes(read_midi(written.read_bytes(), instruments=True).notes) == sorted_notes(decoded)


def test_without_the_flag_the_band_is_one_piano_stream_as_before(tmp_path):
    notes = band_notes()
    data = pretty_band_file(tmp_path / "band.mid", notes).read_bytes()
    piece = read_midi(data)
    assert list(piece.notes) == list(read_midi_mido(data).notes)
    assert all(n.program == 0 and not n.drum for n in piece.notes)
    assert len(piece.notes) == sum(not n.drum for n in notes)  # drums dropped
    tokens = encode_notes(piece.notes, PLAIN)
    assert not any(name.startswith(("Program", "Drum")) for name in names(tokens, PLAIN))
    # drum notes handed to a vocabulary without instruments are dropped, not read as pitches
    assert np.array_equal(encode_notes(notes, PLAIN), encode_notes([n for n in notes if not n.drum], PLAIN))


def test_a_line_doubled_by_two_instruments_is_kept_twice(tmp_path):
    line = [Note(p, i * 0.5, 0.5, 80) for i, p in enumerate((72, 74, 76, 77, 79))]
    doubled = [Note(n.pitch, n.start, n.duration, 80, 40) for n in line] + [Note(n.pitch, n.start, n.duration, 80, 73) for n in line]
    data = pretty_band_file(tmp_path / "doubled.mid", doubled).read_bytes()
    kept = decode_tokens(encode_notes(read_midi(data, instruments=True).notes, VOCAB), VOCAB)
    assert sorted_notes(kept) == sorted_notes(doubled)
    assert len(decode_tokens(encode_notes(read_midi(data).notes, PLAIN), PLAIN)) == len(line)  # merged as unisons


def test_programs_are_kept_by_family_and_drums_outside_the_gm_keys_dropped():
    notes = [Note(60, 0, 1, 90, 41), Note(62, 1, 1, 90, 127), Note(30, 0, 0.25, 90, 0, True), Note(36, 0, 0.25, 90, 0, True)]
    decoded = decode_tokens(encode_notes(notes, VOCAB), VOCAB)
    assert [(n.pitch, n.program, n.drum) for n in sorted(decoded, key=lambda n: (n.start, n.pitch))] == [
        (36, 0, True), (60, 40, False), (62, 122, False)  # viola → violin (Strings); gunshot → Sound effects' 122
    ]


def test_music21_parts_keep_their_programs(tmp_path):
    from music21 import instrument, note, stream

    from composer.corpus import score_piece

    score = stream.Score()
    for kind, pitch in ((instrument.Flute, 72), (instrument.Violoncello, 48)):
        part = stream.Part()
        part.insert(0, kind())
        part.append(note.Note(pitch, quarterLength=2.0))
        score.insert(0, part)
    piece = score_piece(score, instruments=True)
    assert sorted((n.pitch, n.program) for n in piece.notes) == [(48, 42), (72, 73)]
    assert {n.program for n in score_piece(score).notes} == {0}


# ---- the vocabulary and the grammar ---------------------------------------------------------------


def test_vocabulary_adds_program_and_drum_groups_after_the_old_ids():
    assert len(VOCAB) == len(PLAIN) + len(INSTRUMENTS) + len(DRUM_KEYS) == 147 + 17 + 47
    assert VOCAB.names()[: len(PLAIN)] == PLAIN.names()  # old ids unchanged
    assert VOCAB.names()[VOCAB.program_offset] == "Program_Piano" and VOCAB.names()[VOCAB.program_offset + DRUMS] == "Program_Drums"
    assert VOCAB.names()[VOCAB.drum_offset] == "Drum_35" and VOCAB.names()[-1] == "Drum_81"
    assert "instruments" not in PLAIN.to_dict()["config"]  # vocab.json and run.json of plain corpora as before
    assert Vocabulary.from_dict(json.loads(json.dumps(VOCAB.to_dict()))) == VOCAB
    assert Vocabulary.from_dict(PLAIN.to_dict()) == PLAIN


def test_the_reference_run_still_loads_with_its_vocabulary():
    from composer.runs import Run

    run = Path(__file__).resolve().parent.parent / "outputs" / "bach-small-reference"
    config = Run(run).config()  # run.json's vocabulary has no instruments field
    assert config.vocab() == PLAIN and "instruments" not in config.vocabulary["config"]


def test_grammar_orders_programs_and_notes():
    grammar = Grammar(VOCAB)
    grammar.advance(BOS)
    allowed = grammar.allowed()
    assert not allowed[VOCAB.ids(Kind.PITCH)].any() and not allowed[VOCAB.ids(Kind.DRUM)].any()  # a Program first
    assert allowed[VOCAB.ids(Kind.PROGRAM)].all()
    for token in ids(["Program_Bass", "Pitch_36"]):
        grammar.advance(token)
    assert grammar.allowed()[VOCAB.ids(Kind.DURATION)].all() and grammar.allowed().sum() == len(VOCAB.grid)
    grammar.advance(ids(["Duration_1"])[0])
    allowed = grammar.allowed()
    programs = allowed[VOCAB.ids(Kind.PROGRAM)]
    # within an onset, only to a higher instrument (Piano 0 < Bass 4 is behind us), never the current one
    assert not programs[: 5].any() and programs[5:].all()
    assert allowed[VOCAB.ids(Kind.PITCH)][37 - 21 :].all() and not allowed[VOCAB.ids(Kind.PITCH)][: 37 - 21].any()
    grammar.advance(ids(["Program_Drums"])[0])
    allowed = grammar.allowed()
    assert allowed[VOCAB.ids(Kind.DRUM)].all() and allowed.sum() == len(DRUM_KEYS)  # the drums' notes only
    grammar.advance(ids(["Drum_38"])[0])
    allowed = grammar.allowed()  # a drum is complete without a Duration
    assert not allowed[VOCAB.ids(Kind.DURATION)].any() and allowed[EOS]
    assert allowed[ids(["Drum_42"])[0]] and not allowed[ids(["Drum_36"])[0]]  # drum keys ascend too
    assert not allowed[VOCAB.ids(Kind.PITCH)].any() and not allowed[VOCAB.ids(Kind.PROGRAM)].any()
    grammar.advance(ids(["TimeShift_1/2"])[0])
    allowed = grammar.allowed()
    programs = allowed[VOCAB.ids(Kind.PROGRAM)]
    assert programs[:DRUMS].all() and not programs[DRUMS]  # any other instrument after a shift
    assert allowed[ids(["Drum_38"])[0]]  # the drums go on without a Program
    grammar.advance(ids(["Program_Piano"])[0])
    assert grammar.allowed()[ids(["Pitch_36"])[0]]  # the bass's C2 still sounds, the piano's is free


def test_sampling_honours_the_instrument_grammar(tmp_path):
    from composer.generate import SampleSettings, sample

    class Uniform:
        def initial_state(self, n):
            return [(np.zeros((n, 1)), np.zeros((n, 1)))]

        def step(self, tokens, state):
            return np.zeros((len(tokens), len(VOCAB))), state

    primer = encode_notes(band_notes(1), VOCAB)[:-1]
    for length in (5, 40, 200):
        samples = sample(Uniform(), VOCAB, [primer] * 3, SampleSettings(tokens=length, seed=length, max_voices=8))
        for tokens in samples:
            assert len(tokens) == len(primer) + length + 1 and is_grammatical(tokens, VOCAB), names(tokens)
            notes = decode_tokens(tokens, VOCAB)
            np.testing.assert_array_equal(encode_notes(notes, VOCAB), tokens)


@pytest.mark.parametrize("config", [BAND, TokenizerConfig(instruments=True, velocity_bins=4)], ids=["band", "band-velocity4"])
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_random_grammatical_walk_decodes_and_reencodes_identically(config, seed):
    vocab = Vocabulary(config)
    tokens = random_walk(vocab, random.Random(seed), length=200)
    notes = decode_tokens(tokens, vocab)
    assert len(notes) == count_notes(np.array(tokens), vocab)
    assert encode_notes(notes, vocab).tolist() == tokens


any_band_note = st.builds(
    Note,
    pitch=st.integers(0, 127),
    start=st.floats(-1.0, 40.0, allow_nan=False),
    duration=st.floats(0.0, 10.0, allow_nan=False),
    velocity=st.integers(1, 127),
    program=st.sampled_from([0, 5, 33, 40, 41, 73, 127]),
    drum=st.booleans(),
)


@pytest.mark.parametrize("config", [BAND, TokenizerConfig(instruments=True, velocity_bins=4)], ids=["band", "band-velocity4"])
@settings(max_examples=60, deadline=None)
@given(notes=st.lists(any_band_note, min_size=1, max_size=60))
def test_any_band_notes_encode_grammatically_and_idempotently(config, notes):
    vocab = Vocabulary(config)
    tokens = encode_notes(notes, vocab)
    assume(len(tokens) > 2)  # not only drums outside the GM keys (tokenizing skips such a piece: no notes)
    assert is_grammatical(tokens, vocab), names(tokens, vocab)
    decoded = decode_tokens(tokens, vocab)
    np.testing.assert_array_equal(encode_notes(decoded, vocab), tokens)
    assert all(n.drum == (instrument_of(n.program, n.drum) == DRUMS) and (n.drum or n.program in WRITTEN_BACK) for n in decoded)


# ---- the corpus ---------------------------------------------------------------------------------


def test_tokenize_cli_with_instruments_records_it_and_stays_compact(band_folder, tmp_path):
    from train_fixtures import invoke

    band, plain = tmp_path / "band", tmp_path / "plain"
    for out, extra in ((band, ["--instruments"]), (plain, [])):
        result = invoke("tokenize", band_folder, "--out", out, "--no-cache", "--jobs", "1", *extra)
        assert result.exit_code == 0, result.output
    vocab = json.loads((band / "vocab.json").read_text())
    assert vocab["config"]["instruments"] is True and vocab["size"] == len(VOCAB)
    assert "instruments" not in json.loads((plain / "vocab.json").read_text())["config"]
    from composer.dataset import TokenCorpus

    rich, poor = TokenCorpus.load(band), TokenCorpus.load(plain)
    rich_notes, poor_notes = sum(p.notes for p in rich.pieces), sum(p.notes for p in poor.pieces)
    assert rich_notes > poor_notes  # drums kept, unisons of two instruments kept
    per_note = sum(p.tokens for p in rich.pieces) / rich_notes, sum(p.tokens for p in poor.pieces) / poor_notes
    assert per_note[0] <= 1.5 * per_note[1], per_note
    used = {VOCAB.names()[t] for tokens in rich.tokens for t in tokens}
    assert {f"Program_{INSTRUMENTS[program // 8][0]}" for program in QUARTET_PROGRAMS} | {"Program_Piano", "Program_Drums"} <= used


def test_cache_keys_differ_with_the_flag_and_stay_as_they_were_without():
    from composer.corpus import Limits
    from composer.dataset import config_key

    import hashlib
    from dataclasses import asdict

    from composer.dataset import CACHE_VERSION

    assert config_key(BAND, Limits()) != config_key(TokenizerConfig(), Limits())
    # the key as it was computed before the optional fields existed: cached plain corpora are still found
    config = {k: v for k, v in asdict(TokenizerConfig()).items() if k not in ("instruments", "long_notes")}
    before = json.dumps([CACHE_VERSION, config, asdict(Limits())], sort_keys=True)
    assert config_key(TokenizerConfig(), Limits()) == hashlib.sha256(before.encode()).hexdigest()[:16]


# ---- what a listener and a reader see -------------------------------------------------------------


def test_piano_roll_colours_notes_by_instrument(tmp_path):
    from matplotlib.colors import to_rgb

    from composer.report import INSTRUMENT_COLORS, NOTE_COLOR, piano_roll_png

    def colours(notes, margin: bool = False) -> set[tuple[int, ...]]:
        import matplotlib.pyplot as plt

        # with margin: the axis runs on to twice the music, so the right sixth of the picture holds
        # no note, only the legend (when it is in the picture, not cut off at its edge)
        end = 2 * max(n.start + n.duration for n in notes) if margin else None
        image = plt.imread(piano_roll_png(notes, tmp_path / "roll.png", end=end))[..., :3]
        if margin:
            image = image[:, int(image.shape[1] * 0.84) :]
        return {tuple(c) for c in np.rint(image.reshape(-1, 3) * 255).astype(int).tolist()}

    rgb = lambda c: tuple(np.rint(np.array(to_rgb(c)) * 255).astype(int).tolist())  # noqa: E731
    band = colours(band_notes(2))
    assert {rgb(INSTRUMENT_COLORS[0]), rgb(INSTRUMENT_COLORS[4]), rgb(INSTRUMENT_COLORS[DRUMS])} <= band
    # the legend is in the picture, one patch per instrument (not cut off at the figure's edge)
    assert {rgb(INSTRUMENT_COLORS[0]), rgb(INSTRUMENT_COLORS[4]), rgb(INSTRUMENT_COLORS[DRUMS])} <= colours(band_notes(2), margin=True)
    piano = colours([n for n in band_notes(2) if n.program == 0 and not n.drum])
    assert rgb(NOTE_COLOR) in piano and rgb(INSTRUMENT_COLORS[4]) not in piano


def test_score_order_places_every_pitched_family_once():
    from composer.score import SCORE_ORDER

    assert sorted(SCORE_ORDER) == sorted(name for name, _ in INSTRUMENTS[:DRUMS])


def test_scores_have_a_part_per_instrument_without_the_drums(tmp_path):
    from music21 import converter

    from composer.score import accidental_errors, render_excerpt_svg, write_musicxml

    notes = band_notes(2) + [Note(72 + i % 3, i * 0.5, 0.5, 80, 73) for i in range(16)]
    path = write_musicxml(notes, tmp_path / "band.musicxml")
    parts = converter.parse(str(path)).parts
    # the piano on a grand staff (two staves of one part), bass and flute on one staff each;
    # in a conductor's score order (woodwinds, keyboards, bass), the same for every sample of a page
    assert [p.partName for p in parts] == ["Pipe", "Piano", "Piano", "Bass"]
    by_part = {name: sorted(int(x.midi) for p in parts if p.partName == name for x in p.flatten().pitches) for name in ("Piano", "Bass", "Pipe")}
    assert by_part == {
        "Piano": sorted(n.pitch for n in notes if n.program == 0 and not n.drum),
        "Bass": sorted(n.pitch for n in notes if n.program == 33),
        "Pipe": sorted(n.pitch for n in notes if n.program == 73),
    }
    assert [p.getElementsByClass("Measure")[0].clef.sign for p in parts] == ["G", "G", "F", "F"]
    assert accidental_errors(path.read_bytes()).total == 0
    svg = render_excerpt_svg(notes, tmp_path / "band.svg", 0.0, 8.0, 4.0).read_text()
    assert svg.count('class="staff"') == 4 * 2  # four staves in each of the two bars
    from composer.score import staves_in

    assert staves_in(tmp_path / "band.svg") == 4  # what the page sizes the excerpt by


def test_voice_leading_needs_a_four_part_texture():
    from composer.metrics import score_measures
    from composer.score import DEFAULT_RANGES

    sevenths = [Note(p + b, b, 1.0, 80, 0) for b in range(4) for p in (60, 64, 67, 70)] + [Note(36 - b, b, 1.0, 90, 33) for b in range(4)]
    assert all(np.isnan(v) for v in score_measures(sevenths, DEFAULT_RANGES).values())  # 5 voices, 2 instruments: no SATB
    assert not any(np.isnan(v) for v in score_measures(sevenths[:16], DEFAULT_RANGES).values())  # one instrument: read as ever
    chorale = [Note(p + b, b, 1, 90, program) for b in range(3) for p, program in ((72, 73), (67, 71), (60, 60), (48, 33))]
    assert not any(np.isnan(v) for v in score_measures(chorale, DEFAULT_RANGES).values())  # four instruments in four parts


def wav_rms(path: Path) -> float:
    with wave.open(str(path)) as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float)
    return float(np.sqrt(np.mean(samples**2)))


def audible_tracks(midi_path: Path, tmp_path: Path) -> dict[tuple[int, bool], float]:
    """Each track of a MIDI file rendered alone through FluidSynth: (program, drum) → RMS."""
    import pretty_midi

    from composer.audio import render_wav

    levels = {}
    for k, track in enumerate(pretty_midi.PrettyMIDI(str(midi_path)).instruments):
        alone = pretty_midi.PrettyMIDI(initial_tempo=120)
        alone.instruments.append(track)
        alone.write(str(tmp_path / f"track{k}.mid"))
        rendering = render_wav(tmp_path / f"track{k}.mid", tmp_path / f"track{k}.wav")
        assert rendering.synthesizer == "fluidsynth"
        levels[(int(track.program), track.is_drum)] = wav_rms(rendering.path)
    return levels


def needs_fluidsynth():
    from composer.audio import load_fluidsynth

    if load_fluidsynth() is None:
        pytest.skip("pyfluidsynth or libfluidsynth missing: drums need FluidSynth's General MIDI kit")


def test_audio_of_two_instruments_renders_both(tmp_path):
    needs_fluidsynth()
    from composer.audio import render_wav

    notes = [Note(60 + i, i, 1.0, 100, 0) for i in range(4)] + [Note(36, i, 0.25, 110, 0, True) for i in range(4)]
    midi = write_midi(notes, tmp_path / "duo.mid")
    levels = audible_tracks(midi, tmp_path)
    assert set(levels) == {(0, False), (0, True)} and min(levels.values()) > 100, levels
    assert wav_rms(render_wav(midi, tmp_path / "duo.wav").path) > 100


# ---- the whole chain --------------------------------------------------------------------------


@pytest.mark.tensorflow
def test_train_and_generate_on_a_band_corpus(band_folder, tmp_path):
    """Tokenize with --instruments, train a tiny model, generate with a band primer: MIDI with a
    track per instrument, the family programs, drums on channel 10, every instrument audible."""
    needs_fluidsynth()
    import mido
    import pretty_midi

    from train_fixtures import invoke, train_cli

    corpus, run, out = tmp_path / "corpus", tmp_path / "run", tmp_path / "samples"
    result = invoke("tokenize", band_folder, "--out", corpus, "--no-cache", "--jobs", "1", "--instruments", "--validation", "0.25")
    assert result.exit_code == 0, result.output
    train_cli(corpus, run, "--epochs", "2", "--save-at", "2")
    assert json.loads((run / "run.json").read_text())["vocabulary"]["config"]["instruments"] is True
    primer = pretty_band_file(tmp_path / "primer.mid", band_notes(1))
    result = invoke("generate", run, "--epoch", "2", "--num", "2", "--bars", "4", "--primer", primer, "--primer-bars", "1",
                    "--wav", "--out", out)
    assert result.exit_code == 0, result.output
    for path in sorted(out.glob("*.mid")):
        midi = pretty_midi.PrettyMIDI(str(path))
        assert len(midi.instruments) >= 2
        programs = {(int(i.program), i.is_drum) for i in midi.instruments}
        assert all(drum or program in WRITTEN_BACK for program, drum in programs)
        assert {(0, False), (33, False), (0, True)} <= programs  # the primer's piano, bass and drums
        drum_channels = {m.channel for t in mido.MidiFile(path).tracks for m in t if m.type == "note_on"}
        assert 9 in drum_channels
        assert min(audible_tracks(path, tmp_path).values()) > 50
        assert wav_rms(path.with_suffix(".wav")) > 100
    # --program puts every note on one track of that program, as without instruments
    result = invoke("generate", run, "--epoch", "2", "--tokens", "60", "--program", "40", "--out", tmp_path / "one")
    assert result.exit_code == 0, result.output
    (single,) = sorted((tmp_path / "one").glob("*.mid"))
    assert [(int(i.program), i.is_drum) for i in pretty_midi.PrettyMIDI(str(single)).instruments] == [(40, False)]


# ---- without the flag, nothing moves ---------------------------------------------------------------

# sha256 of the 349 bundled chorales' tokens (int32, each piece followed by "|"), as the tokenizer
# gave them before instruments existed (main at bcaf844): 225,663 tokens
CHORALE_TOKENS_SHA256 = "2a1fb8d6c34912ad4a90a26826bea2475a7b3b0afd51368584bf67b5eef2674e"


def test_the_bundled_chorales_tokenize_as_before_instruments():
    import hashlib

    from composer.corpus import find_music_files
    from composer.dataset import tokenize_files
    from conftest import CHORALES

    results, _ = tokenize_files(find_music_files([CHORALES]), TokenizerConfig(), jobs=1)
    digest = hashlib.sha256()
    for _, _, tokens, _ in results:
        digest.update(tokens.astype("<i4").tobytes() + b"|")
    assert (len(results), sum(len(t) for _, _, t, _ in results)) == (349, 225_663)
    assert digest.hexdigest() == CHORALE_TOKENS_SHA256

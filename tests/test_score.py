"""Voices, MusicXML, SVG excerpts and voice-leading measures (composer/score.py).

The bundled chorale MIDI files keep one track per part (Soprano, Alto, Tenor, Bass), so the
part each note was written for is known and the voice assignment can be checked against it.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

from composer.corpus import estimate_key
from composer.score import (
    CHORALE,
    AccidentalErrors,
    DEFAULT_RANGES,
    GRAND_STAFF,
    PRIMER_COLOUR,
    SATB,
    VOICE_LEADING_RATES,
    Voices,
    _staff_heads,
    _written_values,
    accidental_errors,
    assign_voices,
    build_score,
    excerpt_notes,
    excerpt_window,
    musicxml_bytes,
    render_excerpt_svg,
    voice_leading,
    voice_lines,
    voice_ranges,
    write_musicxml,
)
from composer.tokens import EOS, Grammar, Note, Vocabulary, decode_tokens

CHORALES = Path(__file__).resolve().parent.parent / "midi_data" / "bach_chorales"


def read_parts(path: Path) -> tuple[list[Note], list[int]]:
    """Notes of a chorale MIDI file and the part (0 soprano ... 3 bass) each was written for."""
    import mido

    midi = mido.MidiFile(str(path))
    notes, parts = [], []
    for track in midi.tracks:
        name = track.name.strip().lower()
        if name not in SATB:
            continue
        tick, sounding = 0, {}
        for message in track:
            tick += message.time
            if message.type == "note_on" and message.velocity > 0:
                sounding.setdefault(message.note, []).append(tick)
            elif message.type in ("note_on", "note_off") and sounding.get(message.note):
                onset = sounding[message.note].pop(0)
                if tick > onset:
                    q = midi.ticks_per_beat
                    notes.append(Note(message.note, onset / q, (tick - onset) / q))
                    parts.append(SATB.index(name))
    return notes, parts


@pytest.fixture(scope="module")
def four_part_chorales() -> list[tuple[list[Note], list[int]]]:
    """The first 50 chorales written for exactly S, A, T, B (some add instruments)."""
    import mido

    found = []
    for path in sorted(CHORALES.glob("*.mid")):
        names = [t.name.strip().lower() for t in mido.MidiFile(str(path)).tracks if t.name.strip()]
        if names == list(SATB):
            found.append(read_parts(path))
        if len(found) == 50:
            break
    assert len(found) == 50
    return found


def random_token_notes(seed: int, notes: int = 150) -> list[Note]:
    """An untrained model: every grammatical token equally likely, decoded as generation does."""
    vocab = Vocabulary()
    grammar = Grammar(vocab)
    rng = np.random.default_rng(seed)
    tokens: list[int] = []
    while not tokens or tokens[-1] != EOS:
        allowed = grammar.allowed()
        allowed[EOS] &= len(tokens) > 3 * notes  # about `notes` notes, as a sample of fixed length
        token = int(rng.choice(np.flatnonzero(allowed)))
        tokens.append(token)
        grammar.advance(token)
    return decode_tokens(tokens, vocab)


def on_grid(notes: list[Note]) -> list[tuple[int, int, int]]:
    return sorted((round(n.start * 12), n.pitch, round(n.duration * 12)) for n in notes)


def reread(path: Path):
    """(notes on the grid, staves) as music21 reads the file back."""
    import music21

    score = music21.converter.parse(str(path), forceSource=True)
    staves = list(score.parts)
    found = []
    for staff in staves:
        # music21's stripTies misses ties inside one voice when other voices interleave in the
        # flattened staff, so each voice is joined on its own
        for line in staff.voicesToParts().parts:
            for element in line.stripTies().flatten().notes:
                for pitch in element.pitches:
                    found.append((round(float(element.offset) * 12), pitch.midi, round(float(element.quarterLength) * 12)))
    return sorted(found), staves


# ---- voices -------------------------------------------------------------------------------

def test_voices_of_real_chorales_match_their_parts(four_part_chorales):
    matched = total = 0
    for notes, parts in four_part_chorales[:40]:
        voices = assign_voices(notes)
        assert voices.texture == CHORALE
        assert len(voices.of_note) == len(notes) and set(voices.of_note) <= set(range(4))
        # unisons: two parts on one pitch at one onset are interchangeable
        truth: dict[tuple[float, int], list[int]] = {}
        for note, part in zip(notes, parts):
            truth.setdefault((note.start, note.pitch), []).append(part)
        for note, voice in zip(notes, voices.of_note):
            total += 1
            if voice in truth[(note.start, note.pitch)]:
                truth[(note.start, note.pitch)].remove(voice)
                matched += 1
    share = matched / total
    assert total > 9000
    assert share > 0.95, f"only {share:.1%} of notes in their written part"


def test_every_note_is_kept_exactly_once_in_any_texture():
    for seed in range(3):
        notes = random_token_notes(seed)
        for texture in ("auto", CHORALE, GRAND_STAFF):
            voices = assign_voices(notes, texture)
            assert len(voices.of_note) == len(notes)
            per_voice = [voices.notes_of(notes, v) for v in range(len(voices.names))]
            assert sorted(itertools.chain(*per_voice), key=id) == sorted(notes, key=id)
    assert assign_voices([]).of_note == ()


def test_a_held_note_keeps_its_voice_and_the_moving_note_goes_where_it_continues():
    chord = [Note(72, 0, 1), Note(67, 0, 2), Note(64, 0, 2), Note(48, 0, 1)]
    # soprano and bass move while alto and tenor hold
    moving = [Note(74, 1, 1), Note(47, 1, 1)]
    # then a three-note chord without bass: it goes to S, A, T, not to A, T, B
    upper = [Note(76, 2, 1), Note(67, 2, 1), Note(60, 2, 1)]
    notes = chord + moving + upper
    assert assign_voices(notes).of_note == (0, 1, 2, 3, 0, 3, 0, 1, 2)


def test_new_notes_below_a_held_alto_go_to_tenor_and_bass_rather_than_cross_it():
    notes = [Note(70, 0, 1), Note(64, 0, 4), Note(58, 0, 1), Note(50, 0, 1), Note(60, 1, 1), Note(62, 1, 1)]
    voices = assign_voices(notes, CHORALE)
    # the soprano is free and 62 is nearer its 70 than the bass's 50, but under a held E4 it would cross
    assert voices.of_note[4:] == (3, 2)
    _, lines = voice_lines(notes, voices)
    assert lines[:, 1].tolist() == [-1, 64, 62, 60]
    # once the alto's note ends, the same two notes go to the voices nearest them: alto and tenor
    notes[1] = Note(64, 0, 1)
    assert assign_voices(notes, CHORALE).of_note[4:] == (2, 1)


def test_dense_textures_go_to_a_grand_staff_split_around_middle_c_keeping_close_chords_together():
    rng = np.random.default_rng(1)
    notes = [Note(int(p), float(k), 1.0) for k in range(32) for p in rng.choice(np.arange(36, 90), size=7, replace=False)]
    voices = assign_voices(notes)
    assert voices.texture == GRAND_STAFF and voices.staff_of_voice == (0, 1)
    right = [n.pitch for n in voices.notes_of(notes, 0)]
    left = [n.pitch for n in voices.notes_of(notes, 1)]
    assert np.mean(np.array(right) >= 60) > 0.9 and np.mean(np.array(left) < 60) > 0.9
    # B-flat major around middle C stays in one hand rather than being torn apart at 60
    close = [Note(58, 0, 1), Note(62, 0, 1), Note(65, 0, 1)]
    assert len(set(assign_voices(close, GRAND_STAFF).of_note)) == 1
    wide = [Note(48, 0, 1), Note(55, 0, 1), Note(64, 0, 1), Note(72, 0, 1)]
    assert assign_voices(wide, GRAND_STAFF).of_note == (1, 1, 0, 0)


# ---- MusicXML -----------------------------------------------------------------------------

def test_written_values_are_readable_note_values_that_add_up():
    readable = {48, 36, 24, 18, 12, 9, 6, 3, 16, 8, 4, 2, 1}
    for start in range(48):
        for length in range(1, 60):
            values = _written_values(start, length)
            assert sum(values) == length and set(values) <= readable
            position = start
            for value in values:
                # a plain (non-triplet) value never starts off the sixteenth grid
                assert value % 3 or position % 3 == 0, (start, length, values)
                position += value
    assert _written_values(0, 21) == [18, 3]  # a dotted quarter tied to a sixteenth
    assert _written_values(2, 10) == [4, 6]  # a triplet eighth regains the grid, then an eighth


def test_musicxml_of_a_chorale_reads_back_as_the_same_notes_on_two_staves(tmp_path, four_part_chorales):
    import music21

    notes = [n for n in four_part_chorales[0][0] if n.start < 64]  # 16 bars
    # one note held across a barline, to be written as tied notes
    notes.append(Note(36, 2.5, 3.0))
    key = estimate_key(notes)
    path = write_musicxml(notes, tmp_path / "chorale.musicxml", key=key, time_signature="4/4", bpm=84, primer_end=8.0)
    text = path.read_text()
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically, nothing left behind
    assert '<tie type="start"' in text and '<tie type="stop"' in text
    found, staves = reread(path)
    assert found == on_grid(notes)
    assert [type(s).__name__ for s in staves] == ["PartStaff", "PartStaff"]
    clefs = [type(s.recurse().getElementsByClass("Clef")[0]).__name__ for s in staves]
    assert clefs == ["TrebleClef", "BassClef"]
    sharps = staves[0].recurse().getElementsByClass("KeySignature")[0].sharps
    assert sharps == music21.key.Key(key.split()[0] if "major" in key else key.split()[0].lower()).sharps
    assert staves[0].recurse().getElementsByClass("TimeSignature")[0].ratioString == "4/4"
    assert staves[0].recurse().getElementsByClass("MetronomeMark")[0].number == 84
    # soprano and alto on the treble staff, tenor and bass on the bass staff
    treble = sorted((round(float(n.offset) * 12), p.midi) for n in staves[0].recurse().notes for p in n.pitches)
    assert np.mean([p for _, p in treble]) > 62
    # primer notes are grey, the rest are not
    assert text.count(f'color="{PRIMER_COLOUR}"') > 0
    third_bar = re.search(r'<measure [^>]*number="3"', text).start()
    assert f'color="{PRIMER_COLOUR}"' in text[:third_bar] and f'color="{PRIMER_COLOUR}"' not in text[third_bar:]


def test_musicxml_of_an_untrained_model_reads_back_exactly(tmp_path):
    """Triplets, overlapping notes in one voice, notes over several bars: all must survive."""
    for seed in range(2):
        notes = [n for n in random_token_notes(seed, 80) if n.start < 48]
        path = write_musicxml(notes, tmp_path / f"random{seed}.musicxml", time_signature=("3/4", "6/8")[seed])
        found, staves = reread(path)
        assert found == on_grid(notes)
        assert len(staves) == 2


def test_pitches_are_spelled_in_the_key(tmp_path):
    import music21

    def spelled(notes, key):
        path = write_musicxml(notes, tmp_path / "spell.musicxml", key=key)
        score = music21.converter.parse(str(path), forceSource=True)
        return {p.midi: p.nameWithOctave for n in score.recurse().notes for p in n.pitches}

    # D minor: B-flat from the key, C-sharp as the leading tone
    names = spelled([Note(70, 0, 1), Note(73, 1, 1), Note(62, 2, 1)], "D minor")
    assert names == {70: "B-4", 73: "C#5", 62: "D4"}
    # E-flat major: A-flat, and a chromatic note takes a flat
    names = spelled([Note(68, 0, 1), Note(63, 1, 1), Note(66, 2, 1)], "E- major")
    assert names == {68: "A-4", 63: "E-4", 66: "G-4"}
    # A major: F-sharp, C-sharp and G-sharp, and B-sharp never appears as a C
    names = spelled([Note(66, 0, 1), Note(61, 1, 1), Note(68, 2, 1), Note(60, 3, 1)], "A major")
    assert names == {66: "F#4", 61: "C#4", 68: "G#4", 60: "C4"}
    # chromatic notes by their harmony, as Bach spells them: in C major the F-sharp and G-sharp
    # leading tones but the B-flat of V/IV; in D minor the Picardy F-sharp, the G-sharp leading
    # to V and the Neapolitan E-flat
    names = spelled([Note(66, 0, 1), Note(68, 1, 1), Note(70, 2, 1), Note(61, 3, 1)], "C major")
    assert names == {66: "F#4", 68: "G#4", 70: "B-4", 61: "C#4"}
    names = spelled([Note(66, 0, 1), Note(68, 1, 1), Note(63, 2, 1)], "D minor")
    assert names == {66: "F#4", 68: "G#4", 63: "E-4"}


# ---- accidentals --------------------------------------------------------------------------

E, D, D_SHARP, F_SHARP, G_SHARP = 64, 62, 63, 66, 68
A, G = 69, 67


def melody(*bars: list[tuple[int, float]]) -> list[Note]:
    """Notes of a single line in 4/4, given bar by bar as (pitch, beats) filling each bar."""
    notes, start = [], 0.0
    for bar in bars:
        for pitch, beats in bar:
            notes.append(Note(pitch, start, beats))
            start += beats
    return notes


def shown(data: bytes) -> list[tuple[int, str, str | None]]:
    """(bar, written pitch, accidental shown) of every notehead of a MusicXML file, in time order
    staff by staff; a note tied over from the bar before is marked with a leading "~"."""
    import xml.etree.ElementTree as ET

    signs = {None: None, 0: "natural", 1: "sharp", -1: "flat"}
    spelled = {0: "", 1: "#", -1: "-", 2: "##", -2: "--"}
    found = []
    for measure in ET.fromstring(data).iter("measure"):
        for _, heads in sorted(_staff_heads(measure).items()):
            for written, sign in sorted(heads, key=lambda head: head[0].onset):
                name = f"{'~' * written.tied_over}{written.step}{spelled[written.alter]}{written.octave}"
                found.append((int(measure.get("number")), name, signs[sign]))
    return found


def engraved(notes: list[Note], key: str) -> bytes:
    return musicxml_bytes(build_score(notes, key))


def as_music21_writes_it(notes: list[Note], key: str) -> bytes:
    """The score as it was exported before accidentals were worked out: music21, left to itself
    with makeNotation=False, shows every sharp and flat and never a natural."""
    score = build_score(notes, key)
    for element in score.recurse().notes:
        for pitch in element.pitches:
            if pitch.accidental is not None and pitch.accidental.name == "natural":
                pitch.accidental = None
            elif pitch.accidental is not None:
                pitch.accidental.displayStatus = None
    return musicxml_bytes(score)


# E major, four sharps: D-natural departs from the key and needs a natural, once per bar
E_MAJOR_PASSAGE = melody([(E, 1), (D, 1), (F_SHARP, 1), (G_SHARP, 1)], [(D_SHARP, 1), (D, 1), (D, 1), (D_SHARP, 1)])


def test_a_note_departing_from_the_key_signature_shows_a_natural_and_the_key_s_own_notes_none():
    data = engraved(E_MAJOR_PASSAGE, "E major")
    assert shown(data) == [
        (1, "E4", None), (1, "D4", "natural"), (1, "F#4", None), (1, "G#4", None),
        # the key's D-sharp needs no sign; the natural holds for the bar; the sharp then cancels it
        (2, "D#4", None), (2, "D4", "natural"), (2, "D4", None), (2, "D#4", "sharp"),
    ]
    assert accidental_errors(data) == AccidentalErrors(redundant=0, missing=0)


def test_the_checker_fails_on_accidentals_music21_shows_by_itself():
    # the sharps on F, G and the first D are in the key signature; both D-naturals lack their sign
    assert accidental_errors(as_music21_writes_it(E_MAJOR_PASSAGE, "E major")) == AccidentalErrors(redundant=3, missing=2)
    assert accidental_errors(engraved(E_MAJOR_PASSAGE, "E major")).total == 0


def test_a_raised_leading_tone_shows_its_sharp_once_per_bar_and_again_after_the_barline():
    notes = melody(
        [(A, 1), (G_SHARP, 1), (G_SHARP, 1), (A, 1)],
        [(G_SHARP, 1), (G, 1), (A, 1), (G_SHARP, 2)],  # the last G-sharp is tied into bar 3
        [(A, 1), (G_SHARP, 1), (G, 1)],
    )
    data = engraved(notes, "A minor")
    assert shown(data) == [
        (1, "A4", None), (1, "G#4", "sharp"), (1, "G#4", None), (1, "A4", None),
        (2, "G#4", "sharp"), (2, "G4", "natural"), (2, "A4", None), (2, "G#4", "sharp"),
        # a tied note does not repeat its sharp; the next G on that line restates the sharp
        (3, "~G#4", None), (3, "A4", None), (3, "G#4", "sharp"), (3, "G4", "natural"),
    ]
    assert accidental_errors(data).total == 0


def test_after_a_sharp_tied_over_the_barline_the_next_natural_is_shown():
    notes = melody([(A, 3), (G_SHARP, 2)], [(A, 1), (G, 1), (G, 1)])
    assert shown(engraved(notes, "A minor"))[2:] == [
        (2, "~G#4", None), (2, "A4", None), (2, "G4", "natural"), (2, "G4", None),
    ]


def test_accidentals_are_reckoned_per_staff_in_time_order_across_its_voices():
    # G major. Soprano and alto share the treble staff, and the file holds the soprano's bar
    # before the alto's: the alto's F-natural on beat 1 still comes first, so the soprano's
    # F-sharp on beat 4 must cancel it. The bass staff reckons its F-natural afresh.
    soprano, alto = [Note(69, 0, 3), Note(66, 3, 1)], [Note(65, 0, 1), Note(64, 1, 3)]
    tenor, bass = [Note(55, 0, 4)], [Note(41, 0, 4)]
    data = engraved(soprano + alto + tenor + bass, "G major")
    assert shown(data) == [
        (1, "A4", None), (1, "F4", "natural"), (1, "E4", None), (1, "F#4", "sharp"),
        (1, "G3", None), (1, "F2", "natural"),
    ]
    assert accidental_errors(data).total == 0


def test_scores_with_accidentals_read_back_as_the_same_sounding_notes(tmp_path):
    cases = [(E_MAJOR_PASSAGE, "E major"), (melody([(A, 1), (G_SHARP, 1), (G, 1), (G_SHARP, 1)]), "A minor")]
    keys = ["C# minor", "A- major", "F# major", "D minor"]
    cases += [(random_token_notes(seed, 60), key) for seed, key in enumerate(keys)]
    for k, (notes, key) in enumerate(cases):
        path = write_musicxml(notes, tmp_path / f"case{k}.musicxml", key=key)
        found, _ = reread(path)
        assert found == on_grid(notes), key  # onsets, MIDI numbers and lengths
        assert accidental_errors(path.read_bytes()).total == 0, key


def test_real_chorales_engrave_without_a_redundant_or_missing_accidental(four_part_chorales):
    errors, signs = AccidentalErrors(0, 0), set()
    for notes, _ in four_part_chorales:
        data = engraved(notes, estimate_key(notes))
        found = accidental_errors(data)
        errors = AccidentalErrors(errors.redundant + found.redundant, errors.missing + found.missing)
        signs |= {sign for _, _, sign in shown(data)}
    assert errors == AccidentalErrors(0, 0)
    assert signs == {None, "natural", "sharp", "flat"}  # not vacuous: every kind of sign occurs


def test_a_score_has_stable_part_ids_and_its_own_title_and_no_music21_placeholders(tmp_path):
    notes = E_MAJOR_PASSAGE
    text = write_musicxml(notes, tmp_path / "sample_01.musicxml", key="E major").read_text()
    assert re.findall(r'<(?:score-)?part id="([^"]+)"', text) == ["P1", "P1"]
    assert "<work-title>sample_01</work-title>" in text and "<movement-title>sample_01</movement-title>" in text
    assert "<creator" not in text and "Music21" not in text
    untitled = musicxml_bytes(build_score(notes, "E major")).decode()
    assert "<movement-title" not in untitled and "Music21" not in untitled
    # the same piece gives the same file (but for the date music21 stamps it with)
    again = write_musicxml(notes, tmp_path / "sample_01.musicxml", key="E major").read_text()
    assert re.sub("<encoding-date>.*</encoding-date>", "", again) == re.sub("<encoding-date>.*</encoding-date>", "", text)


# ---- SVG ----------------------------------------------------------------------------------

def test_excerpt_window_is_the_primers_last_bar_and_four_more():
    assert excerpt_window(8.0) == (4.0, 24.0)
    assert excerpt_window(6.0) == (4.0, 22.0)
    assert excerpt_window(9.0, "3/4") == (6.0, 21.0)
    cut = excerpt_notes([Note(60, 3.0, 2.0), Note(62, 0.0, 1.0), Note(64, 5.0, 4.0)], 4.0, 8.0)
    assert cut == [Note(60, 0.0, 1.0), Note(64, 1.0, 3.0)]


def test_an_excerpt_renders_as_a_standalone_svg_with_the_primer_in_grey(tmp_path, four_part_chorales):
    notes = four_part_chorales[1][0]
    start, end = excerpt_window(8.0)
    path = render_excerpt_svg(notes, tmp_path / "excerpt.svg", start, end, primer_end=8.0)
    svg = path.read_text()
    assert svg.lstrip().startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "http" not in re.sub(r'xmlns(:\w+)?="[^"]+"', "", svg)  # nothing fetched at view time
    assert re.search(r'viewBox="0 0 \d+ \d+"', svg)
    heads = re.findall(r'<g [^>]*class="note"[^>]*>', svg)
    grey = [head for head in heads if PRIMER_COLOUR in head]
    in_window = excerpt_notes(notes, start, end)
    primer_notes = sum(1 for n in in_window if n.start < 8.0 - start)
    assert len(heads) >= len(in_window)  # tied pieces add heads, none go missing
    assert len(grey) >= primer_notes > 0
    # the generated bars stay black: grey marks only the primer's bar
    assert len(grey) < len(heads) / 3


def accidental_glyphs(svg: str, kind: str = "accid") -> list[str]:
    """SMuFL code of each accidental verovio drew (E260 flat, E261 natural, E262 sharp): beside
    the notes ("accid", empty for a note that shows none) or in key signatures ("keyAccid")."""
    return re.findall(rf'class="{kind}">\s*<use xlink:href="#(E26[0-9A-F])-', svg)


def test_an_excerpt_draws_the_accidentals_the_score_asks_for(tmp_path):
    svg = render_excerpt_svg(E_MAJOR_PASSAGE, tmp_path / "e.svg", 0.0, 8.0, key="E major").read_text()
    # two D-naturals, one per bar, and the sharp that cancels the second; four sharps per staff
    assert sorted(accidental_glyphs(svg)) == ["E261", "E261", "E262"]
    assert accidental_glyphs(svg, "keyAccid") == ["E262"] * 8


def test_every_rendering_uses_exactly_the_key_it_is_given(tmp_path, four_part_chorales):
    notes = four_part_chorales[1][0]  # whatever key its notes suggest
    for key, glyph in (("A major", "E262"), ("E- major", "E260")):
        for start in (0.0, 16.0):  # openings at different bars share one key signature
            svg = render_excerpt_svg(notes, tmp_path / "x.svg", start, start + 8.0, key=key).read_text()
            assert accidental_glyphs(svg, "keyAccid") == [glyph] * 6  # three on each staff, once
    data = musicxml_bytes(build_score(notes, "E- major"))
    assert re.findall(rb"<fifths>(-?\d+)</fifths>", data) == [b"-3"]
    assert accidental_errors(data).total == 0


# ---- measures -----------------------------------------------------------------------------

def test_voice_leading_counts_parallels_and_crossings():
    # every voice steps up a tone: S-T, S-B, T-B move in octaves, A-T and A-B in fifths
    notes = [Note(p, 0, 1) for p in (72, 67, 60, 48)] + [Note(p + 2, 1, 1) for p in (72, 67, 60, 48)]
    m = voice_leading(notes)
    assert (m.pair_moves, m.fifths, m.octaves, m.crossed_onsets) == (6, 2, 3, 0)
    assert m.parallel_fifths_per_100 == pytest.approx(100 * 2 / 6)
    # contrary motion between the outer voices: no parallels
    notes = [Note(p, 0, 1) for p in (72, 67, 60, 48)] + [Note(p, 1, 1) for p in (71, 67, 60, 50)]
    assert voice_leading(notes).fifths + voice_leading(notes).octaves == 0
    # a tenor above the alto, as written, is a crossing
    notes = [Note(p, 0, 1) for p in (72, 60, 64, 48)]
    crossed = voice_leading(notes, voices=Voices(CHORALE, SATB, (0, 0, 1, 1), (0, 1, 2, 3)))
    assert crossed.crossed_onsets == 1 and crossed.crossing_share == 1.0
    assert voice_leading(notes).crossed_onsets == 0  # read in pitch order it is not
    # ranges: a soprano at G6 is out of range
    assert voice_leading([Note(91, 0, 1)]).out_of_range == 1
    assert np.isnan(voice_leading([]).parallel_fifths_per_100)


def test_voice_ranges_of_real_chorales_are_the_choirs(four_part_chorales):
    ranges = voice_ranges([notes for notes, _ in four_part_chorales[:40]])
    assert len(ranges) == 4
    for (low, high), (book_low, book_high) in zip(ranges, DEFAULT_RANGES):
        assert low < high
        assert abs(low - book_low) <= 6 and abs(high - book_high) <= 6
    assert [low for low, _ in ranges] == sorted([low for low, _ in ranges], reverse=True)


def test_real_chorales_score_better_than_an_untrained_model_on_every_measure(four_part_chorales):
    ranges = voice_ranges([notes for notes, _ in four_part_chorales[:40]])
    real = sum((voice_leading(notes, ranges) for notes, _ in four_part_chorales[40:50]), start=voice_leading([]))
    untrained = sum((voice_leading(random_token_notes(seed), ranges) for seed in range(10)), start=voice_leading([]))
    for rate in VOICE_LEADING_RATES:
        assert getattr(real, rate) < getattr(untrained, rate), rate
    assert real.out_of_range_share < 0.05 and untrained.out_of_range_share > 0.5


@pytest.mark.tensorflow
def test_generate_musicxml_writes_a_score_beside_each_midi_file(tmp_path):
    """`composer generate ... --musicxml`: one .musicxml per .mid, holding the same notes (cut at
    the asked span, as the MIDI file), in the primer's metre."""
    from typer.testing import CliRunner

    from composer.cli import app
    from composer.corpus import read_piece

    reference = Path(__file__).resolve().parents[1] / "outputs" / "bach-small-reference"
    primer = sorted((Path(__file__).resolve().parents[1] / "midi_data" / "bach_chorales").glob("*.mid"))[0]
    result = CliRunner().invoke(app, ["generate", str(reference), "--epoch", "150", "--num", "2", "--bars", "2",
                                      "--primer", str(primer), "--musicxml", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    midis, scores = sorted(tmp_path.glob("*.mid")), sorted(tmp_path.glob("*.musicxml"))
    assert len(midis) == 2 and [p.with_suffix(".musicxml") for p in midis] == scores
    for midi, score in zip(midis, scores):
        assert f"wrote {score}" in result.output
        found, staves = reread(score)
        assert found == on_grid(read_piece(midi).notes)
        assert len(staves) == 2
        assert accidental_errors(score.read_bytes()).total == 0
        assert staves[0].recurse().getElementsByClass("TimeSignature")[0].ratioString == read_piece(primer).time_signature

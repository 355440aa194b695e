"""Notes ⇄ tokens: exact round trips, the grammar, velocity bins and the vocabulary."""

from __future__ import annotations

import json
import random
from dataclasses import asdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.tokens import (
    BOS,
    DEFAULT_VELOCITY,
    EOS,
    FINE_BEAT_RES,
    MAX_TIED,
    PAD,
    Grammar,
    Kind,
    Note,
    TokenizerConfig,
    Vocabulary,
    bin_velocity,
    count_notes,
    decode_tokens,
    encode_notes,
    greedy_split,
    grid_values,
    is_grammatical,
    token_groups,
    velocity_bin,
)

DEFAULT = TokenizerConfig()
VOCAB = Vocabulary(DEFAULT)
SPQ = DEFAULT.steps_per_quarter
CONFIGS = [
    DEFAULT,
    TokenizerConfig(velocity_bins=8),
    TokenizerConfig(steps_per_quarter=4, beat_res=((0, 1, 4), (1, 4, 2)), pitch_low=36, pitch_high=84),
    TokenizerConfig(beat_res=FINE_BEAT_RES, long_notes="tie", velocity_bins=4),
    TokenizerConfig(steps_per_quarter=4, beat_res=((0, 1, 4), (1, 2, 1)), long_notes="tie"),
]
CONFIG_IDS = ["default", "velocity8", "coarse", "fine-tie", "coarse-tie"]


def ordered(notes):
    return sorted(notes, key=lambda n: (n.start, n.pitch))


def names(tokens, vocab=VOCAB):
    table = vocab.names()
    return [table[int(t)] for t in tokens]


def ids(token_names, vocab=VOCAB):
    table = vocab.names()
    return np.array([table.index(n) for n in token_names], dtype=np.int32)


def q(steps: int, spq: int = SPQ) -> float:
    """Grid steps → quarters, computed as the decoder computes them."""
    return steps / spq


def assert_round_trip(notes, vocab=VOCAB):
    tokens = encode_notes(notes, vocab)
    assert tokens.dtype == np.int32
    assert is_grammatical(tokens, vocab), names(tokens, vocab)
    decoded = decode_tokens(tokens, vocab)
    assert decoded == ordered(notes)
    np.testing.assert_array_equal(encode_notes(decoded, vocab), tokens)
    assert count_notes(tokens, vocab) == len(notes)
    return tokens


# ---- exact round trips of on-grid notes -----------------------------------------------------


def test_single_note_tokens():
    tokens = assert_round_trip([Note(60, 0.0, 1.0)])
    assert names(tokens) == ["BOS", "Pitch_60", "Duration_1", "EOS"]


def test_chord_rest_and_sixteenth_tokens():
    notes = [
        Note(60, 0.0, 1.0),
        Note(67, 1.0, 0.5),  # given out of pitch order: a chord is written ascending
        Note(64, 1.0, 0.5),
        Note(62, 2.5, 0.25),  # after a rest of one eighth
    ]
    tokens = assert_round_trip(notes)
    assert names(tokens) == [
        "BOS",
        "Pitch_60", "Duration_1",
        "TimeShift_1",
        "Pitch_64", "Duration_1/2", "Pitch_67", "Duration_1/2",
        "TimeShift_3/2",
        "Pitch_62", "Duration_1/4",
        "EOS",
    ]


def test_sixteenths_and_eighth_note_triplets():
    sixteenths = [Note(60 + i, q(3 * i), q(3)) for i in range(8)]
    triplets = [Note(72 - i, q(24 + 4 * i), q(4)) for i in range(6)]
    tokens = assert_round_trip(sixteenths + triplets)
    assert "TimeShift_1/4" in names(tokens) and "Duration_1/3" in names(tokens)


def test_piece_starting_after_silence():
    tokens = assert_round_trip([Note(60, 4.25, 0.25)])
    assert names(tokens)[1:3] == ["TimeShift_4", "TimeShift_1/4"]


def test_long_rest_needs_several_time_shifts():
    notes = [Note(60, 0.0, 1.0), Note(62, 31.0, 1.0)]  # 30 quarters of rest
    tokens = assert_round_trip(notes)
    shifts = [n for n in names(tokens) if n.startswith("TimeShift")]
    assert shifts == ["TimeShift_8", "TimeShift_8", "TimeShift_8", "TimeShift_7"]


def test_long_notes_and_every_duration_value():
    grid = grid_values(DEFAULT)
    assert max(grid) == 8 * SPQ
    notes = [Note(40 + i % 40, q(100 * i), q(d)) for i, d in enumerate(grid)]
    assert_round_trip(notes)
    assert_round_trip([Note(60, 0.0, 8.0), Note(64, 0.0, 7.0), Note(67, 4.0, 0.25)])


def test_every_pitch_of_the_range():
    notes = [Note(p, 0.0, 1.0) for p in VOCAB.pitches]
    tokens = assert_round_trip(notes)
    assert len(tokens) == 2 + 2 * len(VOCAB.pitches)


def test_overlapping_different_pitches_and_restrike_after_release():
    notes = [
        Note(60, 0.0, 4.0),
        Note(64, 1.0, 0.5),
        Note(60, 4.0, 1.0),  # struck again exactly when the first C ends
        Note(48, 4.0, 2.0),
    ]
    assert_round_trip(notes)


def test_empty_piece():
    tokens = encode_notes([], VOCAB)
    assert tokens.tolist() == [BOS, EOS]
    assert decode_tokens(tokens, VOCAB) == []


# ---- what happens to notes that are not on the grid ------------------------------------------


def test_off_grid_notes_snap_to_nearest_step():
    (note,) = decode_tokens(encode_notes([Note(60, 1.02, 0.3)], VOCAB), VOCAB)
    assert note.start == 1.0 and note.duration == pytest.approx(4 / 12)


def test_pitches_out_of_range_fold_by_octaves():
    decoded = decode_tokens(encode_notes([Note(10, 0, 1), Note(120, 1, 1)], VOCAB), VOCAB)
    assert [n.pitch for n in decoded] == [22, 108]


def test_note_longer_than_the_grid_is_cut_to_the_longest_duration():
    (note,) = decode_tokens(encode_notes([Note(60, 0.0, 20.0)], VOCAB), VOCAB)
    assert note.duration == max(grid_values(DEFAULT)) / SPQ


def test_same_pitch_overlap_is_cut_at_the_new_onset():
    decoded = decode_tokens(encode_notes([Note(60, 0.0, 4.0), Note(60, 1.0, 1.0)], VOCAB), VOCAB)
    assert decoded == [Note(60, 0.0, 1.0), Note(60, 1.0, 1.0)]


def test_same_pitch_same_onset_merges_longest_wins():
    decoded = decode_tokens(encode_notes([Note(60, 0.0, 1.0), Note(60, 0.0, 2.0)], VOCAB), VOCAB)
    assert decoded == [Note(60, 0.0, 2.0)]


# ---- tokens → notes → tokens -----------------------------------------------------------------


@pytest.mark.parametrize(
    "token_names",
    [
        ["BOS", "Pitch_60", "Duration_1", "EOS"],
        ["BOS", "TimeShift_8", "TimeShift_1/12", "Pitch_21", "Duration_8", "Pitch_108", "Duration_1/12", "EOS"],
        ["BOS", "Pitch_48", "Duration_4", "Pitch_52", "Duration_1/3", "TimeShift_1/3", "Pitch_52", "Duration_1/3",
         "TimeShift_4", "Pitch_48", "Duration_3/2", "EOS"],
    ],
)
def test_tokens_notes_tokens_identity(token_names):
    tokens = ids(token_names)
    assert is_grammatical(tokens, VOCAB)
    np.testing.assert_array_equal(encode_notes(decode_tokens(tokens, VOCAB), VOCAB), tokens)


def test_decode_skips_specials_and_drops_an_unfinished_note():
    tokens = ids(["PAD", "BOS", "Pitch_60", "Duration_1", "Pitch_64"]).tolist() + [EOS] + ids(["Pitch_67", "Duration_1"]).tolist()
    assert decode_tokens(tokens, VOCAB) == [Note(60, 0.0, 1.0)]


# ---- property tests ----------------------------------------------------------------------------


@st.composite
def on_grid_pieces(draw, config: TokenizerConfig):
    """Notes on the grid, no same-pitch overlap (which the encoder shortens by design)."""
    grid, spq, bins = grid_values(config), config.steps_per_quarter, config.velocity_bins
    velocities = [bin_velocity(b, bins) for b in range(bins)] if bins else [DEFAULT_VELOCITY]
    lengths = grid + [k * grid[-1] + g for k in range(1, MAX_TIED) for g in grid] if config.ties else grid
    onset, notes, sounding_until = 0, [], {}
    for _ in range(draw(st.integers(1, 40))):
        onset += draw(st.sampled_from([0, 0] + grid + [3 * max(grid) + 1]))
        pitch = draw(st.integers(config.pitch_low, config.pitch_high))
        duration = draw(st.sampled_from(lengths))
        if sounding_until.get(pitch, 0) > onset:
            continue
        sounding_until[pitch] = onset + duration
        notes.append(Note(pitch, onset / spq, duration / spq, draw(st.sampled_from(velocities))))
    return notes


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_on_grid_notes_round_trip_exactly(config, data):
    notes = data.draw(on_grid_pieces(config))
    assert_round_trip(notes, Vocabulary(config))


any_note = st.builds(
    Note,
    pitch=st.integers(0, 127),
    start=st.floats(-1.0, 80.0, allow_nan=False),
    duration=st.floats(0.0, 20.0, allow_nan=False),
    velocity=st.integers(1, 127),
)


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@settings(max_examples=60, deadline=None)
@given(notes=st.lists(any_note, min_size=1, max_size=60))
def test_any_notes_encode_grammatically_and_idempotently(config, notes):
    vocab = Vocabulary(config)
    tokens = encode_notes(notes, vocab)
    assert is_grammatical(tokens, vocab), names(tokens, vocab)
    decoded = decode_tokens(tokens, vocab)
    assert decoded, "a non-empty piece decodes to at least one note"
    for note in decoded:
        assert config.pitch_low <= note.pitch <= config.pitch_high
        assert note.duration > 0 and note.start >= 0
    np.testing.assert_array_equal(encode_notes(decoded, vocab), tokens)


def random_walk(vocab: Vocabulary, rng: random.Random, length: int) -> list[int]:
    """Pick allowed tokens at random (shifts and pitches equally likely) until EOS."""
    grammar, tokens, kinds = Grammar(vocab), [], vocab.kinds()
    while True:
        mask = grammar.allowed()
        allowed = np.flatnonzero(mask)
        assert len(allowed), f"dead end after {names(tokens, vocab)}"
        if mask[EOS] and (len(tokens) >= length or rng.random() < 0.02):
            token = EOS
        else:
            choices = [t for t in allowed if t != EOS]
            by_kind = {}
            for t in choices:
                by_kind.setdefault(int(kinds[t]), []).append(int(t))
            if len(tokens) >= length and Kind.PITCH in by_kind:  # head for the end: no more shifts
                by_kind = {Kind.PITCH: by_kind[Kind.PITCH]}
            kind = rng.choice(sorted(by_kind))
            recent = [t for t in tokens[-12:] if kinds[t] == Kind.PITCH and mask[t]]
            if kind == Kind.PITCH and recent and rng.random() < 0.5:
                token = rng.choice(recent)  # restrike a pitch just released: the edge of the rule
            else:
                token = rng.choice(by_kind[kind])
        grammar.advance(token)
        tokens.append(int(token))
        if token == EOS:
            return tokens


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_random_grammatical_walk_decodes_and_reencodes_identically(config, seed):
    vocab = Vocabulary(config)
    tokens = random_walk(vocab, random.Random(seed), length=200)
    assert tokens[0] == BOS and tokens[-1] == EOS
    assert is_grammatical(tokens, vocab)
    notes = decode_tokens(tokens, vocab)
    assert len(notes) == count_notes(np.array(tokens), vocab)
    assert encode_notes(notes, vocab).tolist() == tokens


# ---- velocity -----------------------------------------------------------------------------------


def test_velocity_bins_round_trip_every_velocity():
    vocab = Vocabulary(TokenizerConfig(velocity_bins=8))
    seen = set()
    for velocity in range(1, 128):
        tokens = encode_notes([Note(60, 0.0, 1.0, velocity)], vocab)
        b = velocity_bin(velocity, 8)
        seen.add(b)
        assert names(tokens, vocab) == ["BOS", "Pitch_60", f"Velocity_{b}", "Duration_1", "EOS"]
        (note,) = decode_tokens(tokens, vocab)
        assert 1 <= note.velocity <= 127
        assert velocity_bin(note.velocity, 8) == b
        np.testing.assert_array_equal(encode_notes([note], vocab), tokens)
    assert seen == set(range(8))
    assert [velocity_bin(v, 8) for v in range(1, 128)] == sorted(velocity_bin(v, 8) for v in range(1, 128))


def test_velocity_is_ignored_when_bins_are_off():
    tokens = encode_notes([Note(60, 0.0, 1.0, 20), Note(64, 0.0, 1.0, 120)], VOCAB)
    assert encode_notes([Note(60, 0.0, 1.0), Note(64, 0.0, 1.0)], VOCAB).tolist() == tokens.tolist()
    assert {n.velocity for n in decode_tokens(tokens, VOCAB)} == {DEFAULT_VELOCITY}


# ---- vocabulary ---------------------------------------------------------------------------------


def test_grid_values():
    grid = grid_values(DEFAULT)
    assert grid == sorted(set(grid))
    assert grid[:12] == list(range(1, 13))  # every step up to a quarter: sixteenths (3), triplets (4)
    assert max(grid) == 96 and 15 in grid and 13 not in grid
    with pytest.raises(ValueError):
        grid_values(TokenizerConfig(steps_per_quarter=12, beat_res=((0, 1, 5),)))


@pytest.mark.parametrize("config", [TokenizerConfig(), TokenizerConfig(velocity_bins=8, pitch_low=36, pitch_high=96)])
def test_the_group_table_gives_every_id_its_kind_name_and_decoding(config):
    """Offsets, names, kinds and the decode all come from ``token_groups``: the groups tile the
    ids without gaps, each token's name starts with its group's, and every token of a group
    decodes as that kind (a Pitch token gives its pitch, a Duration its value)."""
    v = Vocabulary(config)
    groups = token_groups(config)
    assert [g.offset for g in groups] == [0] + list(np.cumsum([len(g.labels) for g in groups[:-1]]))
    assert sum(len(g.labels) for g in groups) == len(v) == len(v.names())
    kinds, names = v.kinds(), v.names()
    for group in groups:
        assert set(kinds[group.ids]) <= {group.kind}
        assert all(n.startswith(group.name) for n in names[group.ids])
    pitch = v.groups[Kind.PITCH]
    assert names[pitch.offset] == f"Pitch_{config.pitch_low}" and len(pitch.labels) == config.pitch_high - config.pitch_low + 1
    duration = v.groups[Kind.DURATION].offset + 5
    decoded = decode_tokens([BOS, v.pitch_token(60), *([v.velocity_offset] if config.velocity_bins else []), duration, EOS], v)
    assert [(n.pitch, n.duration) for n in decoded] == [(60, v.grid[5] / config.steps_per_quarter)]


def test_vocabulary_layout_and_names():
    v = VOCAB
    table = v.names()
    assert len(table) == len(v) == len(v.kinds())
    assert len(set(table)) == len(table)
    assert table[PAD] == "PAD" and table[BOS] == "BOS" and table[EOS] == "EOS"
    assert table[v.shift_token(3)] == "TimeShift_1/4"
    assert table[v.pitch_token(60)] == "Pitch_60"
    assert table[v.duration_token(18)] == "Duration_3/2"
    assert not any(n.startswith("Velocity") for n in table)
    assert len(v) == 3 + 2 * len(v.grid) + 88
    v8 = Vocabulary(TokenizerConfig(velocity_bins=8))
    assert [n for n in v8.names() if n.startswith("Velocity")] == [f"Velocity_{i}" for i in range(8)]
    assert len(v8) == len(v) + 8


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_vocabulary_json_round_trip(config):
    vocab = Vocabulary(config)
    data = json.loads(json.dumps(vocab.to_dict()))
    assert data["size"] == len(vocab)
    again = Vocabulary.from_dict(data)
    assert again == vocab
    assert again.to_dict() == vocab.to_dict()


def test_vocabulary_rejects_tokens_that_do_not_match_the_configuration():
    data = json.loads(json.dumps(VOCAB.to_dict()))
    data["tokens"][5], data["tokens"][6] = data["tokens"][6], data["tokens"][5]
    with pytest.raises(ValueError):
        Vocabulary.from_dict(data)


# the default vocabulary, spelled out by hand from DESIGN.md and the README's table: every step
# up to a quarter, every sixteenth up to 4 quarters, every quarter up to 8
DEFAULT_GRID_NAMES = (
    ["1/12", "1/6", "1/4", "1/3", "5/12", "1/2", "7/12", "2/3", "3/4", "5/6", "11/12", "1"]
    + ["5/4", "3/2", "7/4", "2", "9/4", "5/2", "11/4", "3", "13/4", "7/2", "15/4", "4"]
    + ["5", "6", "7", "8"]
)
DEFAULT_NAMES = (
    ["PAD", "BOS", "EOS"]
    + [f"TimeShift_{g}" for g in DEFAULT_GRID_NAMES]
    + [f"Pitch_{p}" for p in range(21, 109)]
    + [f"Duration_{g}" for g in DEFAULT_GRID_NAMES]
)


def test_vocabulary_depends_only_on_the_configuration():
    assert len(DEFAULT_NAMES) == 147
    # encoding corpora of every shape, before the vocabulary is built or after, never changes it
    pieces = [
        [Note(p, i * 0.5, 1.0) for i, p in enumerate(range(30, 90))],
        [Note(0, 0.0, 100.0), Note(127, 1000.0, 0.01)],  # out of range, off the grid, long
        [Note(60, 0.25 * i, 0.25, velocity=1 + i % 127) for i in range(500)],
    ]
    for notes in pieces:
        before = Vocabulary(DEFAULT)
        encode_notes(notes, before)
        assert before.names() == DEFAULT_NAMES
        assert Vocabulary(DEFAULT).names() == DEFAULT_NAMES
    # and it survives the trip through vocab.json
    rebuilt = Vocabulary.from_dict(json.loads(json.dumps(VOCAB.to_dict())))
    assert rebuilt.names() == DEFAULT_NAMES and rebuilt.to_dict()["size"] == 147
    assert Vocabulary(TokenizerConfig.from_dict(json.loads(json.dumps(asdict(DEFAULT))))).names() == DEFAULT_NAMES
    # another configuration is another vocabulary
    assert Vocabulary(TokenizerConfig(pitch_low=36)).names() != DEFAULT_NAMES
    assert "Velocity_0" in Vocabulary(TokenizerConfig(velocity_bins=4)).names()


def allowed_next(prefix, vocab: Vocabulary) -> np.ndarray:
    """The grammar's mask after ``prefix``: what sampling asks it one token at a time."""
    grammar = Grammar(vocab)
    for token in prefix:
        grammar.advance(token)
    return grammar.allowed()


# ---- grammar specifics ----------------------------------------------------------------------------


def allowed_names(prefix_names, vocab=VOCAB):
    mask = allowed_next(ids(prefix_names, vocab), vocab)
    table = vocab.names()
    return {table[i] for i in np.flatnonzero(mask)}


def test_only_bos_first_and_nothing_after_eos():
    assert allowed_names([]) == {"BOS"}
    assert allowed_names(["BOS", "Pitch_60", "Duration_1", "EOS"]) == set()
    assert not is_grammatical(ids(["BOS", "Pitch_60", "Duration_1", "EOS", "Pitch_62", "Duration_1", "EOS"]), VOCAB)
    assert not is_grammatical(ids(["Pitch_60", "Duration_1", "EOS"]), VOCAB)


def test_after_a_pitch_only_a_duration():
    durations = {n for n in VOCAB.names() if n.startswith("Duration_")}
    assert allowed_names(["BOS", "Pitch_60"]) == durations
    v8 = Vocabulary(TokenizerConfig(velocity_bins=8))
    assert allowed_names(["BOS", "Pitch_60"], v8) == {f"Velocity_{i}" for i in range(8)}
    assert allowed_names(["BOS", "Pitch_60", "Velocity_3"], v8) == {n for n in v8.names() if n.startswith("Duration_")}


def test_pitches_at_one_onset_ascend():
    allowed = allowed_names(["BOS", "Pitch_60", "Duration_1"])
    assert "Pitch_61" in allowed and "Pitch_108" in allowed
    assert "Pitch_60" not in allowed and "Pitch_59" not in allowed and "Pitch_21" not in allowed
    # after a time shift, lower pitches are open again
    assert "Pitch_59" in allowed_names(["BOS", "Pitch_60", "Duration_1", "TimeShift_1"])
    assert not is_grammatical(ids(["BOS", "Pitch_64", "Duration_1", "Pitch_60", "Duration_1", "EOS"]), VOCAB)


def test_a_sounding_pitch_cannot_be_restruck():
    prefix = ["BOS", "Pitch_60", "Duration_2", "TimeShift_1"]
    assert "Pitch_60" not in allowed_names(prefix)
    assert "Pitch_61" in allowed_names(prefix) and "Pitch_59" in allowed_names(prefix)
    assert "Pitch_60" in allowed_names(prefix + ["Pitch_62", "Duration_1", "TimeShift_1"])  # released at 2


def test_eos_only_after_a_complete_note():
    assert "EOS" not in allowed_names(["BOS"])
    assert "EOS" not in allowed_names(["BOS", "Pitch_60"])
    assert "EOS" in allowed_names(["BOS", "Pitch_60", "Duration_1"])
    assert "EOS" not in allowed_names(["BOS", "Pitch_60", "Duration_1", "TimeShift_1"])  # no trailing shift


def test_consecutive_time_shifts_must_be_the_greedy_split():
    after_small = allowed_names(["BOS", "Pitch_60", "Duration_1", "TimeShift_1/12"])
    assert not any(n.startswith("TimeShift") for n in after_small)
    after_longest = allowed_names(["BOS", "Pitch_60", "Duration_1", "TimeShift_8"])
    assert {"TimeShift_8", "TimeShift_1/12", "TimeShift_7"} <= after_longest
    assert not is_grammatical(ids(["BOS", "TimeShift_1/12", "TimeShift_1/12", "Pitch_60", "Duration_1", "EOS"]), VOCAB)
    assert not is_grammatical(ids(["BOS", "TimeShift_1", "TimeShift_8", "Pitch_60", "Duration_1", "EOS"]), VOCAB)


# ---- the array encoder against the rules note by note -----------------------------------------


def reference_encode(notes, vocab):
    """The encoder written note by note, as it was before it worked in arrays: the rules it keeps."""
    import bisect

    grid, spq, bins = vocab.grid, vocab.config.steps_per_quarter, vocab.config.velocity_bins
    best = {}
    for note in notes:
        onset = max(0, int(round(note.start * spq)))
        pitch = int(note.pitch)
        while pitch < vocab.config.pitch_low:
            pitch += 12
        while pitch > vocab.config.pitch_high:
            pitch -= 12
        length = note.duration * spq
        if (onset, pitch) not in best or best[(onset, pitch)][0] < length:
            best[(onset, pitch)] = (length, int(note.velocity))
    events = []
    for onset, pitch in sorted(best):
        later = [o for o, p in best if p == pitch and o > onset]
        top = len(grid) if not later else max(1, bisect.bisect_right(grid, min(later) - onset))
        length, velocity = best[(onset, pitch)]
        if vocab.config.ties:  # every length tied values spell, the nearest that ends by the next strike
            spelled = sorted({k * grid[-1] + g for k in range(MAX_TIED) for g in [0] + grid} - {0})
            fits = [v for v in spelled if not later or v <= min(later) - onset] or spelled[:1]
            value = min(fits, key=lambda v: (abs(v - min(length, MAX_TIED * grid[-1])), v))
            events.append((onset, pitch, value, velocity))
            continue
        i = bisect.bisect_left(grid, length, 0, top)
        value = grid[0] if i == 0 else grid[i - 1] if i == top or length - grid[i - 1] <= grid[i] - length else grid[i]
        events.append((onset, pitch, value, velocity))
    tokens, time = [BOS], 0
    for onset, pitch, duration, velocity in events:
        if onset > time:
            tokens.extend(vocab.shift_token(v) for v in greedy_split(onset - time, grid))
            time = onset
        tokens.append(vocab.pitch_token(pitch))
        if bins:
            tokens.append(vocab.velocity_offset + velocity_bin(velocity, bins))
        while duration > grid[-1]:  # a tie: the largest value, then the rest
            tokens.append(vocab.duration_token(grid[-1]))
            duration -= grid[-1]
        tokens.append(vocab.duration_token(duration))
    return np.asarray(tokens + [EOS], dtype=np.int32)


# starts and lengths on and off the grid, with many notes of one onset and pitch (ties included)
crowded_note = st.builds(
    Note,
    pitch=st.sampled_from([0, 20, 21, 60, 60, 61, 108, 109, 127]),
    start=st.one_of(st.sampled_from([0.0, 0.5, 1 / 24, 1 / 12, 1.0, 1.04, 7.5, 100.0]), st.floats(-1.0, 40.0, allow_nan=False)),
    duration=st.one_of(st.sampled_from([0.0, 1e-9, 1 / 24, 0.25, 1.0, 1.5, 8.0, 1e6]), st.floats(0.0, 20.0, allow_nan=False)),
    velocity=st.integers(0, 127),
)


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@settings(max_examples=150, deadline=None)
@given(notes=st.lists(st.one_of(any_note, crowded_note), max_size=60))
def test_array_encoder_keeps_the_note_by_note_rules(config, notes):
    vocab = Vocabulary(config)
    assert np.array_equal(encode_notes(notes, vocab), reference_encode(notes, vocab))


def test_array_encoder_on_the_bundled_chorales(chorale_files):
    from composer.corpus import read_piece

    for config in CONFIGS[:2]:
        vocab = Vocabulary(config)
        for path in chorale_files[::7]:
            notes = read_piece(path).notes
            assert np.array_equal(encode_notes(notes, vocab), reference_encode(notes, vocab)), path.name


def test_note_columns_are_the_notes_they_hold():
    from composer.tokens import NoteColumns

    notes = [Note(60, 0.0, 1.0, 80), Note(64, 0.5, 0.25, 90), Note(67, 2.0, 1.5, 100)]
    columns = NoteColumns.of(notes)
    assert NoteColumns.of(columns) is columns
    assert columns == notes and notes == columns and list(columns) == notes
    assert len(columns) == 3 and columns[1] == notes[1] and columns[1:] == notes[1:]
    assert [hash(n) for n in columns] == [hash(n) for n in notes] and repr(columns[0]) == repr(notes[0])
    with pytest.raises(AttributeError):
        columns[0].pitch = 61  # still frozen
    assert np.array_equal(encode_notes(columns, VOCAB), encode_notes(notes, VOCAB))
    assert NoteColumns.of([]) == [] and len(encode_notes(NoteColumns.of([]), VOCAB)) == 2


# ---- long notes: the fine grid and tied durations (long_notes="tie") ---------------------------

TIE = Vocabulary(TokenizerConfig(beat_res=FINE_BEAT_RES, long_notes="tie"))


def test_tied_durations_spell_long_notes_exactly():
    notes = [Note(60, 0.0, 4.5), Note(64, 0.0, 17.5), Note(67, 1.0, 8.0), Note(72, 1.0, 16.0)]
    tokens = assert_round_trip(notes, TIE)
    assert names(tokens, TIE) == [
        "BOS", "Pitch_60", "Duration_9/2", "Pitch_64", "Duration_8", "Duration_8", "Duration_3/2",
        "TimeShift_1", "Pitch_67", "Duration_8", "Pitch_72", "Duration_8", "Duration_8", "EOS",
    ]


def test_tied_durations_stop_at_max_tied_spans():
    (note,) = decode_tokens(encode_notes([Note(60, 0.0, 1000.0)], TIE), TIE)
    assert note.duration == MAX_TIED * 8.0


def test_the_default_still_clamps_and_rounds_above_four_quarters():
    decoded = decode_tokens(encode_notes([Note(60, 0.0, 4.5), Note(64, 0.0, 9.0)], VOCAB), VOCAB)
    assert [n.duration for n in decoded] == [4.0, 8.0]


def test_only_the_largest_duration_can_be_tied():
    top, other = TIE.duration_token(TIE.grid[-1]), TIE.duration_token(TIE.grid[-2])
    after_top = allowed_next([BOS, TIE.pitch_token(60), top], TIE)
    assert after_top[TIE.ids(Kind.DURATION)].all() and after_top[EOS]
    assert not allowed_next([BOS, TIE.pitch_token(60), other], TIE)[TIE.ids(Kind.DURATION)].any()
    full = [BOS, TIE.pitch_token(60)] + [top] * MAX_TIED
    assert is_grammatical(full + [EOS], TIE)
    assert not allowed_next(full, TIE)[TIE.ids(Kind.DURATION)].any()
    # without ties a Duration never follows a Duration
    assert not allowed_next([BOS, VOCAB.pitch_token(60), VOCAB.duration_token(96)], VOCAB)[VOCAB.ids(Kind.DURATION)].any()


def test_a_tied_note_blocks_its_pitch_until_it_ends():
    top = TIE.duration_token(TIE.grid[-1])
    prefix = [BOS, TIE.pitch_token(60), top, top, TIE.shift_token(96)]
    assert not allowed_next(prefix, TIE)[TIE.pitch_token(60)]
    assert allowed_next(prefix + [TIE.shift_token(96)], TIE)[TIE.pitch_token(60)]


def test_count_notes_counts_a_tied_note_once():
    tokens = encode_notes([Note(60, 0.0, 20.0), Note(62, 0.0, 1.0), Note(64, 21.0, 9.0)], TIE)
    assert count_notes(tokens, TIE) == 3
    assert sum(n.startswith("Duration") for n in names(tokens, TIE)) == 3 + 2 + 1  # 8+8+4, 1, 8+1


def test_the_long_notes_setting_is_written_only_when_on():
    """A vocabulary written before the setting existed reads, compares and hashes the same."""
    assert "long_notes" not in VOCAB.to_dict()["config"]
    assert TIE.to_dict()["config"]["long_notes"] == "tie"
    assert Vocabulary.from_dict(json.loads(json.dumps(TIE.to_dict()))) == TIE
    from composer.config import dataclass_problem

    config = VOCAB.to_dict()["config"]
    assert dataclass_problem(TokenizerConfig, config, "vocabulary.config") is None
    problem = dataclass_problem(TokenizerConfig, {**config, "long_notes": "bogus"}, "vocabulary.config")
    assert problem.startswith("vocabulary.config.long_notes:")

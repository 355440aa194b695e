"""Generation: the stateful step against Keras, seeds, validity of every sample, primers, greedy limits,
errors of the `generate` command, a fast `--help`, and safe loading of checkpoints.

Run directories are built by hand (no training): an untrained model is the worst case for validity,
since it spreads probability over every token the grammar allows.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from composer import ComposerError
from composer.cli import app
from composer.generate import (
    SampleSettings,
    bar_quarters,
    can_finish,
    finishing_mask,
    generate,
    primer_from_file,
    sample,
)
from composer.config import PRESETS, ModelConfig
from composer.model import LSTMStepper, StepperWeights, build_model, load_checkpoint, load_weights
from composer.tokens import (
    BOS,
    EOS,
    FINE_BEAT_RES,
    Grammar,
    Kind,
    Note,
    TokenizerConfig,
    Vocabulary,
    decode_tokens,
    encode_notes,
    is_grammatical,
)

REPO = Path(__file__).resolve().parents[1]
CHORALES = REPO / "midi_data" / "bach_chorales"
RUN_BPM = 100.0  # the run's median tempo; the chorales used as primers are at 96 and 120
TINY = {"embedding": 16, "units": 32, "layers": 2}  # where the preset is not the point
runner = CliRunner()


# ---- helpers -----------------------------------------------------------------------------------


def randomize(model, seed: int, scale: float = 1.0):
    """Random non-zero weights of a size that gives logits spread over several units."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shape = tuple(weight.shape)
        if len(shape) == 2 and "embedding" in weight.path:
            bound = scale
        elif len(shape) == 2:
            bound = scale * np.sqrt(3.0 / shape[0])  # unit variance pre-activations
        else:
            bound = 0.5 * scale
        weight.assign(rng.uniform(-bound, bound, shape).astype("float32"))
    return model


def untrained(vocab: Vocabulary, seed: int = 0, **sizes):
    """A model as build_model initializes it, with the initializers seeded (reproducible)."""
    import keras

    keras.utils.set_random_seed(seed)
    return build_model(ModelConfig(len(vocab), **(sizes or TINY)))


def make_run(root: Path, vocab: Vocabulary, model, epoch: int = 1) -> Path:
    """A run directory as train_run leaves it after `epoch` epochs, without training."""
    from composer.config import TrainConfig

    checkpoints = root / "checkpoints"
    checkpoints.mkdir(parents=True)
    model.save(checkpoints / f"epoch-{epoch:04d}.keras")
    model.save(checkpoints / "last.keras")
    (checkpoints / "last.json").write_text(json.dumps({"epoch": epoch}))
    config = ModelConfig(
        len(vocab),
        embedding=model.get_layer("embedding").output_dim,
        units=model.get_layer("lstm_0").units,
        layers=sum(1 for layer in model.layers if layer.name.startswith("lstm_")),
    )
    train = TrainConfig()
    run_config = {
        "model": config.to_dict(),
        "vocabulary": vocab.to_dict(),
        "train": {**asdict(train), "save_at": list(train.save_at)},
        "data": {
            "source": "midi_data/bach_chorales",
            "corpus": str(root / "corpus"),
            "train_pieces": 300,
            "validation_pieces": 30,
            "train_tokens": 250_000,
            "validation_notes": 9_000,
            "median_bpm": RUN_BPM,
            "time_signature": "4/4",
        },
        "baseline": None,
    }
    (root / "run.json").write_text(json.dumps(run_config, indent=1))
    return root


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result) -> str:
    """The command failed with exit code 1 and exactly one line on stderr, no traceback."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def written_paths(result) -> list[Path]:
    assert result.exit_code == 0, (result.output, result.exception)
    return [Path(line.removeprefix("wrote ")) for line in result.stdout.splitlines() if line.startswith("wrote ")]


def greedy_reference(stepper, vocab: Vocabulary, primer: np.ndarray, steps: int) -> list[int]:
    """Argmax decoding written out here: the stepper's logits, masked by the grammar alone."""
    grammar = Grammar(vocab)
    state = stepper.initial_state(1)
    logits = None
    for token in primer:
        grammar.advance(token)
        logits, state = stepper.step(np.array([token]), state)
    tokens = list(primer)
    for _ in range(steps):
        allowed = grammar.allowed()
        token = int(np.argmax(np.where(allowed, logits[0], -np.inf)))
        tokens.append(token)
        if token == EOS:
            break
        grammar.advance(token)
        logits, state = stepper.step(np.array([token]), state)
    return tokens


def check_sample(tokens: np.ndarray, path: Path, vocab: Vocabulary, bpm: float, end: float | None = None) -> None:
    """A sample is grammatical, survives decode→encode unchanged, and its MIDI file holds exactly its
    notes (cut at ``end`` quarters, where an asked span ends) and lasts until ``end``."""
    import pretty_midi

    from composer.corpus import read_piece

    names = vocab.names()
    shown = " ".join(names[t] for t in tokens[-12:])
    assert tokens[0] == BOS and tokens[-1] == EOS, shown
    assert is_grammatical(tokens, vocab), f"ungrammatical sample ending … {shown}"
    notes = decode_tokens(tokens, vocab)
    assert notes, "a sample without notes"
    assert np.array_equal(encode_notes(notes, vocab), tokens), f"decode→encode changes the sample ending … {shown}"
    midi = pretty_midi.PrettyMIDI(str(path))
    if end is not None:
        notes = [Note(n.pitch, n.start, min(n.duration, end - n.start), n.velocity) for n in notes]
        assert midi.get_end_time() == pytest.approx(end * 60 / bpm, abs=2e-3), "the file does not last the asked span"
    written = sorted((n.start, n.pitch, n.end, n.velocity) for inst in midi.instruments for n in inst.notes)
    expected = sorted((n.start * 60 / bpm, n.pitch, (n.start + n.duration) * 60 / bpm, n.velocity) for n in notes)
    assert len(written) == len(expected)
    for (s1, p1, e1, v1), (s2, p2, e2, v2) in zip(written, expected):
        assert (p1, v1) == (p2, v2)
        assert s1 == pytest.approx(s2, abs=2e-3) and e1 == pytest.approx(e2, abs=2e-3)
    # and through the project's own reader: the file encodes back to the very same (cut) notes
    assert np.array_equal(encode_notes(read_piece(path).notes, vocab), encode_notes(notes, vocab))


# ---- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, vocab) -> Path:
    return make_run(tmp_path_factory.mktemp("run"), vocab, untrained(vocab, seed=0))


@pytest.fixture(scope="module")
def velocity_vocab() -> Vocabulary:
    return Vocabulary(TokenizerConfig(velocity_bins=8))


@pytest.fixture(scope="module")
def velocity_run(tmp_path_factory, velocity_vocab) -> Path:
    return make_run(tmp_path_factory.mktemp("velocity-run"), velocity_vocab, untrained(velocity_vocab, seed=1))


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory, vocab) -> Path:
    """Epoch 1 fine; 2 garbage bytes; 3 a model for another vocabulary; 4 a truncated checkpoint."""
    root = make_run(tmp_path_factory.mktemp("broken-run"), vocab, untrained(vocab, seed=2))
    checkpoints = root / "checkpoints"
    (checkpoints / "epoch-0002.keras").write_bytes(np.random.default_rng(0).bytes(5000))
    build_model(ModelConfig(len(vocab) + 5, **TINY)).save(checkpoints / "epoch-0003.keras")
    good = (checkpoints / "epoch-0001.keras").read_bytes()
    (checkpoints / "epoch-0004.keras").write_bytes(good[: len(good) // 2])
    return root


@pytest.fixture(scope="module")
def peaked_stepper(vocab) -> LSTMStepper:
    """A stepper whose logits are well spread (clear argmax), for the greedy limits."""
    return LSTMStepper(StepperWeights.from_keras(randomize(build_model(ModelConfig(len(vocab), **TINY)), seed=5)))


# ---- the stateful step against the training graph -------------------------------------------------


@pytest.mark.tensorflow
@pytest.mark.parametrize("preset", ["small", "full"])
def test_stepper_reproduces_keras_logits(preset, vocab, tmp_path):
    """The stepper made from the archive read with h5py (what generate and compare use) gives
    the logits of the Keras model that saved it, and holds exactly the live model's weights."""
    config = ModelConfig.preset(preset, len(vocab))
    model = randomize(build_model(config), seed=11)
    model.save(tmp_path / "model.keras")
    weights = load_weights(tmp_path / "model.keras", config)
    live = StepperWeights.from_keras(model)
    for read, held in zip([weights.embedding, *sum(weights.cells, ()), *weights.dense], [live.embedding, *sum(live.cells, ()), *live.dense]):
        assert read.dtype == np.float32 and np.array_equal(read, held)
    stepper = LSTMStepper(weights)
    assert len(stepper.cells) == PRESETS[preset]["layers"] and stepper.units == PRESETS[preset]["units"]
    rng = np.random.default_rng(3)
    x = rng.integers(0, len(vocab), size=(3, 50)).astype("int32")
    x[:, 0] = BOS
    assert len({tuple(row) for row in x}) == 3
    expected = np.asarray(model(x))  # inference: dropout off
    assert expected.shape == (3, 50, len(vocab))
    assert expected.std() > 0.3, "logits too flat for the comparison to mean anything"
    state = stepper.initial_state(3)
    got = []
    for t in range(x.shape[1]):
        logits, state = stepper.step(x[:, t], state)
        got.append(logits)
    got = np.stack(got, axis=1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    # one stream alone gives the same logits as inside the batch
    state = stepper.initial_state(1)
    for t in range(x.shape[1]):
        logits, state = stepper.step(x[1:2, t], state)
    np.testing.assert_allclose(logits[0], expected[1, -1], rtol=0, atol=1e-4)


@pytest.mark.tensorflow
def test_stepper_likelihood_matches_training(vocab):
    """compare's bits per note, now from the stepper, are the ones training computes with Keras."""
    from composer.train import token_nll

    model = randomize(build_model(ModelConfig(len(vocab), **TINY)), seed=4, scale=0.5)
    rng = np.random.default_rng(8)
    pieces = [np.concatenate([[BOS], rng.integers(3, len(vocab), n)]).astype(np.int32) for n in (5, 40, 130, 70)]
    keras_total, keras_count = token_nll(model, pieces)
    total, count = LSTMStepper(StepperWeights.from_keras(model)).nll(pieces, batch=3)
    assert count == keras_count == sum(len(p) - 1 for p in pieces)
    assert total == pytest.approx(keras_total, rel=1e-5)


# ---- seeds ------------------------------------------------------------------------------------------


@pytest.mark.tensorflow
def test_same_seed_same_files_different_seed_different_files(run_dir, tmp_path):
    files = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        paths = written_paths(invoke("generate", run_dir, "--epoch", 1, "--num", 2, "--tokens", 100, "--seed", seed, "--out", tmp_path / name))
        assert len(paths) == 2 and all(p.parent == tmp_path / name and p.suffix == ".mid" for p in paths)
        files[name] = [p.read_bytes() for p in paths]
    assert files["a"] == files["b"], "the same seed must give byte-identical MIDI files"
    assert [p.name for p in sorted((tmp_path / "a").iterdir())] == [p.name for p in sorted((tmp_path / "b").iterdir())]
    assert files["a"][0] != files["a"][1], "the samples of one batch must differ"
    assert all(x != y for x, y in zip(files["a"], files["c"])), "another seed must give other samples"


@pytest.mark.tensorflow
def test_sample_does_not_depend_on_batch_or_other_primers(vocab, peaked_stepper):
    """Sample i draws from its own generator: it is the same alone or in a batch, whatever the others' primers."""
    settings = SampleSettings(temperature=1.5, seed=9, cap=150)
    short = np.array([BOS], np.int32)
    long = encode_notes(primer_notes(CHORALES / "bwv10_7.mid", 1.0), vocab)[:-1]
    batch = sample(peaked_stepper, vocab, [long, short, long], settings)
    alone = sample(peaked_stepper, vocab, [long], settings)
    assert np.array_equal(batch[0], alone[0])
    # sample 1 of the batch, with a short primer left-padded beside long ones, equals sample 1 of an all-short batch
    assert np.array_equal(batch[1], sample(peaked_stepper, vocab, [short, short], settings)[1])


@pytest.mark.tensorflow
def test_primers_of_other_metres_sample_as_one_batch_and_as_alone(run_dir, vocab):
    """continue_primers samples openings of different span lengths (here 4/4 at 96 bpm and 3/4 at
    120) in one batch; each sample is the one its primer gives alone with the same generator."""
    import dataclasses

    from composer.generate import continue_primers, load_sampler
    from composer.runs import Run

    sampler = load_sampler(Run(run_dir), "1")
    primers = [primer_from_file(CHORALES / f"{name}.mid", 1.0, vocab) for name in ("bwv190_7", "bwv11_6", "bwv190_7")]
    settings = SampleSettings(seed=2)
    calls = []
    original = sampler.stepper.step

    def counted(tokens, state):
        calls.append(len(tokens))
        return original(tokens, state)

    sampler.stepper.step = counted
    batch = continue_primers(sampler, primers, settings, bars=2)
    assert set(calls) == {3}, "every step advances all three samples together"
    sampler.stepper.step = original
    spq = vocab.config.steps_per_quarter
    for i, primer in enumerate(primers):
        bar = bar_quarters(primer.time_signature) * spq
        span = dataclasses.replace(settings, steps=int(2 * bar), max_voices=sampler.max_voices, max_rest=int(bar))
        alone = sample(sampler.stepper, vocab, [primer.tokens], span, starts=[int(round(primer.end * spq))], rows=[i])
        assert np.array_equal(batch[i], alone[0]), f"sample {i} differs from its primer sampled alone"
    assert not np.array_equal(batch[0], batch[2]), "the same primer twice still gets two generators"


# ---- every sample is valid music ----------------------------------------------------------------------


@pytest.mark.tensorflow
@pytest.mark.parametrize("seed,temperature", [(0, 1.0), (1, 2.0), (2, 0.7)])
def test_tokens_mode_exact_length_and_valid(run_dir, vocab, tmp_path, seed, temperature):
    T = 300
    settings = SampleSettings(temperature=temperature, seed=seed, tokens=T)
    result = generate(run_dir, "1", num=4, settings=settings, out=tmp_path)
    assert len(result.paths) == 4
    for tokens, path in zip(result.tokens, result.paths):
        assert len(tokens) == 1 + T + 1, f"{len(tokens)} tokens for --tokens {T} (BOS + {T} + EOS expected)"
        check_sample(tokens, path, vocab, RUN_BPM)


@pytest.mark.tensorflow
@pytest.mark.parametrize("seed,temperature,top_k,top_p", [(0, 1.0, 0, 1.0), (1, 2.0, 0, 1.0), (2, 1.2, 20, 0.9)])
def test_bars_mode_onsets_within_the_bars(run_dir, vocab, tmp_path, seed, temperature, top_k, top_p):
    settings = SampleSettings(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    result = generate(run_dir, "1", num=6, settings=settings, bars=4, out=tmp_path)
    end = 4 * bar_quarters("4/4")
    for tokens, path in zip(result.tokens, result.paths):
        check_sample(tokens, path, vocab, RUN_BPM, end)
        onsets = [n.start for n in decode_tokens(tokens, vocab)]
        assert max(onsets) < end, f"onset {max(onsets)} is past the {end} quarters of 4 bars"


@pytest.mark.tensorflow
def test_seconds_mode_onsets_within_the_seconds(run_dir, vocab, tmp_path):
    result = generate(run_dir, "1", num=4, settings=SampleSettings(seed=5), seconds=6.0, out=tmp_path)
    for tokens, path in zip(result.tokens, result.paths):
        check_sample(tokens, path, vocab, RUN_BPM, 6.0 * RUN_BPM / 60)
        assert max(n.start for n in decode_tokens(tokens, vocab)) * 60 / RUN_BPM < 6.0


@pytest.mark.tensorflow
def test_short_bars_never_give_an_empty_sample(vocab):
    """With --bars 1 an opening TimeShift of a whole bar or more reaches the end before any note.

    An untrained model draws one ~4 % of the time; the sample must still hold a note (and so be grammatical)
    rather than come out as BOS EOS, an empty MIDI file.
    """
    stepper = LSTMStepper(StepperWeights.from_keras(untrained(vocab, seed=0)))
    steps = int(1 * bar_quarters("4/4") * vocab.config.steps_per_quarter)
    samples = sample(stepper, vocab, [np.array([BOS], np.int32)] * 128, SampleSettings(temperature=2.0, seed=0, steps=steps))
    empty = [i for i, s in enumerate(samples) if len(decode_tokens(s, vocab)) == 0]
    assert not empty, f"{len(empty)} of 128 samples have no notes, e.g. {samples[empty[0]].tolist()}"
    assert all(is_grammatical(s, vocab) for s in samples)


@pytest.mark.tensorflow
@pytest.mark.parametrize("mode", ["tokens", "bars"])
def test_velocity_bins_samples_are_valid(velocity_run, velocity_vocab, tmp_path, mode):
    vocab = velocity_vocab
    assert len(vocab) == len(Vocabulary()) + 8
    for seed, temperature in ((0, 1.0), (1, 2.0)):
        settings = SampleSettings(temperature=temperature, seed=seed, tokens=120 if mode == "tokens" else None)
        result = generate(velocity_run, "1", num=2, settings=settings, bars=4 if mode == "bars" else None, out=tmp_path / f"{seed}")
        velocities = set()
        for tokens, path in zip(result.tokens, result.paths):
            if mode == "tokens":
                assert len(tokens) == 1 + 120 + 1
            check_sample(tokens, path, vocab, RUN_BPM, 16.0 if mode == "bars" else None)
            notes = decode_tokens(tokens, vocab)
            velocities |= {n.velocity for n in notes}
            if mode == "bars":
                assert max(n.start for n in notes) < 16
        assert len(velocities) > 1, "velocity tokens are sampled but every note has the same velocity"


def test_finishing_mask_keeps_lower_pitches_when_the_highest_cannot_finish(vocab):
    """Four tokens left after a TimeShift: `Pitch_60 Duration Pitch_61 Duration` finishes, so pitches stay allowed.

    Only the highest pitch cannot finish (no higher chord note can follow it); a verdict memoized for it
    must not be applied to the pitches below.
    """
    grammar = Grammar(vocab)
    for token in (BOS, vocab.pitch_token(60), vocab.duration_token(12), vocab.shift_token(12)):
        grammar.advance(token)
    from composer.generate import _advanced

    assert can_finish(_advanced(grammar, vocab.pitch_token(60)), 3, {})
    mask = finishing_mask(grammar, 4, vocab)
    assert mask.any(), "no token allowed with 4 tokens left, though a two-note chord fits"
    assert mask[vocab.pitch_token(60)]
    assert not mask[vocab.pitch_token(vocab.config.pitch_high)]


class TieLovingStepper:
    """Random logits that favour the longest Duration (so ties are drawn often) and TimeShifts:
    no model, so no TensorFlow."""

    def __init__(self, vocab: Vocabulary, seed: int):
        self.vocab, self.rng = vocab, np.random.default_rng(seed)

    def initial_state(self, count: int):
        return [(np.zeros((count, 1)), np.zeros((count, 1)))]

    def step(self, tokens, state):
        logits = self.rng.normal(size=(len(tokens), len(self.vocab)))
        logits[:, self.vocab.duration_offset + len(self.vocab.grid) - 1] += 4.0
        logits[:, self.vocab.ids(Kind.SHIFT)] += 1.0
        return logits, state


@pytest.mark.parametrize("seed", range(4))
def test_tied_durations_sample_exact_lengths_and_spans(seed):
    """With ties, a Duration may follow a Duration: the finishing search and the span rules still
    give exactly the tokens asked for, and every sample decodes and re-encodes to itself."""
    vocab = Vocabulary(TokenizerConfig(beat_res=FINE_BEAT_RES, long_notes="tie"))
    stepper = TieLovingStepper(vocab, seed)
    primers = [np.array([BOS], np.int32)] * 3
    ties = 0
    for settings in (SampleSettings(seed=seed, tokens=t) for t in (2, 3, 5, 8, 13, 40)):
        for tokens in sample(stepper, vocab, primers, settings):
            assert len(tokens) == settings.tokens + 2 and is_grammatical(tokens, vocab)
            assert np.array_equal(encode_notes(decode_tokens(tokens, vocab), vocab), tokens)
            durations = np.isin(tokens, np.arange(len(vocab))[vocab.ids(Kind.DURATION)])
            ties += int((durations[1:] & durations[:-1]).sum())
    for tokens in sample(stepper, vocab, primers, SampleSettings(seed=seed, steps=8 * 12 * 4, max_rest=48)):
        assert is_grammatical(tokens, vocab)
        assert max(n.start for n in decode_tokens(tokens, vocab)) < 32
    assert ties > 0, "no tie was drawn: the test does not test ties"


# ---- audio ---------------------------------------------------------------------------------------------


@pytest.mark.tensorflow
@pytest.mark.parametrize("span,primer", [(["--bars", "2"], None), (["--seconds", "3"], "bwv10_7.mid")])
def test_wav_beside_each_midi_lasts_the_span(run_dir, vocab, tmp_path, span, primer):
    """--wav renders each MIDI file as compare renders its audio: the asked span (primer included)
    and the tail every WAV has for releases, with sound in it."""
    import wave

    from composer.audio import TAIL_SECONDS

    args = ["generate", run_dir, "--epoch", 1, "--num", 2, *span, "--wav", "--out", tmp_path]
    if primer:
        args += ["--primer", CHORALES / primer]
    paths = written_paths(invoke(*args))
    midis, wavs = [p for p in paths if p.suffix == ".mid"], [p for p in paths if p.suffix == ".wav"]
    assert [p.with_suffix(".wav") for p in midis] == wavs and len(wavs) == 2
    if primer:
        opening = primer_from_file(CHORALES / primer, 2.0, vocab)
        seconds = opening.end * 60 / opening.bpm + 3
    else:
        seconds = 2 * bar_quarters("4/4") * 60 / RUN_BPM
    for path in wavs:
        with wave.open(str(path)) as audio:
            rate = audio.getframerate()
            assert audio.getnframes() == round((seconds + TAIL_SECONDS) * rate), (audio.getnframes() / rate, seconds)
            samples = np.frombuffer(audio.readframes(audio.getnframes()), "<i2").astype(float)
        heard = samples[: round(seconds * rate)]
        assert np.sqrt(np.mean(heard**2)) > 300, "the span is silent"
        # sound across the span, not only at its start
        assert all(np.abs(part).max() > 100 for part in np.array_split(heard, 4))


# ---- primers -----------------------------------------------------------------------------------------


def primer_notes(path: Path, bars: float):
    from composer.corpus import read_piece

    piece = read_piece(path)
    end = bars * bar_quarters(piece.time_signature)
    return [n for n in piece.notes if n.start < end]


@pytest.mark.tensorflow
@pytest.mark.parametrize("name", ["bwv190_7", "bwv11_6"])  # 4/4 at 96 bpm; 3/4 at 120 bpm
def test_primer_opens_the_sample_and_sets_tempo(run_dir, vocab, tmp_path, name):
    import pretty_midi

    from composer.corpus import read_piece

    source = CHORALES / f"{name}.mid"
    piece = read_piece(source)
    primer_tokens = encode_notes(primer_notes(source, 2), vocab)[:-1]
    assert primer_tokens[0] == BOS and len(primer_tokens) > 10
    paths = written_paths(
        invoke("generate", run_dir, "--epoch", 1, "--num", 2, "--bars", 2, "--primer", source, "--primer-bars", 2,
               "--seed", 1, "--out", tmp_path)
    )
    assert len(paths) == 2 and all(name in p.name for p in paths)
    bar = bar_quarters(piece.time_signature)
    generated = []
    for path in paths:
        midi = pretty_midi.PrettyMIDI(str(path))
        _, tempi = midi.get_tempo_changes()
        assert len(tempi) == 1 and tempi[0] == pytest.approx(piece.tempo, abs=0.01)
        assert tempi[0] != pytest.approx(RUN_BPM)
        signature = midi.time_signature_changes[0]
        assert f"{signature.numerator}/{signature.denominator}" == piece.time_signature
        written = read_piece(path)
        tokens = encode_notes(written.notes, vocab)
        assert np.array_equal(tokens[: len(primer_tokens)], primer_tokens), "the sample does not open with the primer"
        generated.append(len(tokens) - len(primer_tokens) - 1)
        primer_set = {(n.pitch, round(n.start * 12)) for n in decode_tokens(primer_tokens, vocab)}
        assert primer_set <= {(n.pitch, round(n.start * 12)) for n in decode_tokens(tokens, vocab)}
        assert max(n.start for n in written.notes) < 4 * bar + 1e-6, "notes past the primer's 2 bars + 2 bars"
        assert is_grammatical(tokens, vocab)
    # a sample may legitimately end at once (EOS drawn first), but not all of them
    assert max(generated) > 0, "nothing was generated after the primer"


def test_primer_from_file_reads_the_opening_bars(vocab):
    source = CHORALES / "bwv11_6.mid"  # 3/4
    primer = primer_from_file(source, 2, vocab)
    assert primer.time_signature == "3/4" and primer.end == 6.0
    assert np.array_equal(primer.tokens, encode_notes(primer_notes(source, 2), vocab)[:-1])
    assert primer.tokens[-1] >= vocab.duration_offset, "a primer ends on a complete note"
    with pytest.raises(ComposerError, match="no such primer"):
        primer_from_file(CHORALES / "missing.mid", 2, vocab)


# ---- greedy limits -------------------------------------------------------------------------------------


@pytest.mark.tensorflow
def test_greedy_limits_equal_argmax_decoding(vocab, peaked_stepper):
    primer = np.array([BOS], np.int32)
    cap = 160
    reference = greedy_reference(peaked_stepper, vocab, primer, cap)
    # before the last few tokens, where the cap's finishing mask takes over, sampling sees the grammar's mask alone
    compare = min(len(reference), cap - 13)
    assert compare > 50
    variants = {
        "temperature 0": SampleSettings(temperature=0.0, cap=cap),
        "temperature 1e-6": SampleSettings(temperature=1e-6, cap=cap),
        "top-k 1": SampleSettings(top_k=1, cap=cap),
        "top-p 1e-9": SampleSettings(top_p=1e-9, cap=cap),
        "top-k 1 at temperature 2": SampleSettings(top_k=1, temperature=2.0, cap=cap),
    }
    results = {}
    for label, settings in variants.items():
        for seed in (0, 7):  # greedy ignores the seed
            settings.seed = seed
            out = sample(peaked_stepper, vocab, [primer, primer], settings)
            assert np.array_equal(out[0], out[1]), label
            assert out[0][:compare].tolist() == reference[:compare], label
            results[(label, seed)] = out[0].tolist()
    assert len({tuple(v) for v in results.values()}) == 1, "the greedy limits disagree near the cap"
    # and an ordinary temperature does not reproduce the greedy decode
    ordinary = sample(peaked_stepper, vocab, [primer], SampleSettings(temperature=1.0, cap=cap, seed=0))[0]
    assert ordinary[:compare].tolist() != reference[:compare]


@pytest.mark.tensorflow
def test_greedy_through_the_cli_gives_identical_files(run_dir, tmp_path):
    contents = []
    for label, options in (("t0", ["--temperature", 0]), ("k1", ["--top-k", 1]), ("p", ["--top-p", 1e-9])):
        paths = written_paths(invoke("generate", run_dir, "--epoch", 1, "--num", 1, "--tokens", 60, "--seed", 2,
                                     *options, "--out", tmp_path / label))
        contents.append(paths[0].read_bytes())
    assert contents[0] == contents[1] == contents[2]


# ---- errors ---------------------------------------------------------------------------------------------


@pytest.mark.tensorflow
def test_unknown_epoch_lists_the_available_ones(run_dir):
    line = one_line_error(invoke("generate", run_dir, "--epoch", 7))
    assert line.endswith("no checkpoint for epoch 7 (available: 1, last)"), line


def test_missing_run(tmp_path):
    line = one_line_error(invoke("generate", tmp_path / "no-such-run", "--epoch", 1))
    assert "no-such-run" in line


@pytest.mark.tensorflow
def test_run_without_checkpoint_for_last(tmp_path, vocab):
    """A run copied without last.keras (as the shipped reference run): 'last' is its highest kept
    epoch; with no checkpoint at all, one line."""
    root = make_run(tmp_path / "run", vocab, build_model(ModelConfig(len(vocab), **TINY)))
    (root / "checkpoints" / "last.keras").unlink()
    assert [p.parent.name for p in written_paths(invoke("generate", root, "--tokens", 10))] == ["epoch-0001"]
    (root / "checkpoints" / "epoch-0001.keras").unlink()
    assert "no checkpoint yet" in one_line_error(invoke("generate", root))


@pytest.mark.tensorflow
@pytest.mark.parametrize("epoch", [2, 4])  # garbage bytes; a truncated checkpoint
def test_corrupt_checkpoint_is_one_line(broken_run, epoch):
    line = one_line_error(invoke("generate", broken_run, "--epoch", epoch, "--tokens", 10))
    assert f"epoch-{epoch:04d}.keras" in line


@pytest.mark.tensorflow
def test_checkpoint_for_another_vocabulary(broken_run, vocab):
    line = one_line_error(invoke("generate", broken_run, "--epoch", 3, "--tokens", 10))
    assert "vocabulary" in line and str(len(vocab)) in line and str(len(vocab) + 5) in line


@pytest.mark.tensorflow
def test_broken_run_still_generates_from_its_good_epoch(broken_run, tmp_path):
    assert len(written_paths(invoke("generate", broken_run, "--epoch", 1, "--tokens", 20, "--out", tmp_path))) == 1


@pytest.mark.tensorflow
@pytest.mark.parametrize("options", [["--tokens", 10, "--bars", 2], ["--bars", 2, "--seconds", 5]])
def test_length_options_exclude_each_other(run_dir, tmp_path, options):
    line = one_line_error(invoke("generate", run_dir, "--epoch", 1, *options, "--out", tmp_path))
    assert "--tokens" in line and "--bars" in line
    assert not list(tmp_path.iterdir())


@pytest.mark.tensorflow
@pytest.mark.parametrize(
    "options",
    [["--num", 0], ["--tokens", 0], ["--tokens", -5], ["--bars", 0], ["--bars", -1], ["--seconds", 0],
     ["--temperature", -1], ["--top-p", 0]],
    ids=lambda options: " ".join(map(str, options)),
)
def test_invalid_values_are_one_line_errors(run_dir, tmp_path, options):
    """Nonsense values are refused up front, not answered with a traceback, a NaN or an empty MIDI file."""
    line = one_line_error(invoke("generate", run_dir, "--epoch", 1, *options, "--out", tmp_path))
    assert options[0] in line
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


@pytest.mark.tensorflow
@pytest.mark.parametrize("velocity,tokens", [(False, 1), (True, 1), (True, 2)])
def test_too_few_tokens_to_end_on_a_note(run_dir, velocity_run, tmp_path, velocity, tokens):
    """No grammatical sample has exactly 1 new token (2 with velocity): the length is refused up front."""
    result = invoke("generate", velocity_run if velocity else run_dir, "--epoch", 1, "--tokens", tokens, "--out", tmp_path)
    line = one_line_error(result)
    assert f"--tokens {tokens}: at least {3 if velocity else 2} tokens" in line
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


@pytest.mark.tensorflow
def test_primer_that_does_not_exist(run_dir, tmp_path):
    line = one_line_error(invoke("generate", run_dir, "--epoch", 1, "--primer", tmp_path / "nope.mid", "--out", tmp_path))
    assert "nope.mid" in line


@pytest.mark.tensorflow
def test_generate_does_not_change_its_default_settings(run_dir, tmp_path):
    """generate() fills in the span's length on its own copy: the caller's settings (and the
    default for the next call) stay as they were, so a --bars call cannot leak into a --tokens one."""
    settings = SampleSettings(seed=4)
    before = asdict(settings)
    first = generate(run_dir, "1", num=1, settings=settings, bars=1, out=tmp_path / "bars")
    assert asdict(settings) == before, f"generate() changed the caller's settings to {asdict(settings)}"
    assert max(n.start for n in decode_tokens(first.tokens[0], Vocabulary())) < 4
    # the next call without a span is unbounded by bars: it keeps going past one bar
    second = generate(run_dir, "1", num=1, settings=settings, out=tmp_path / "free")
    assert len(second.tokens[0]) > len(first.tokens[0])


# ---- a fast --help ----------------------------------------------------------------------------------------


def test_generate_help_lists_its_options():
    """What --help shows (its imports: tests/test_startup.py)."""
    result = CliRunner().invoke(app, ["generate", "--help"])
    assert result.exit_code == 0 and "Usage" in result.output
    for option in ("--epoch", "--tokens", "--bars", "--temperature", "--top-k", "--top-p", "--primer", "--seed", "--max-voices", "--musicxml"):
        assert option in result.output


# ---- safe loading -------------------------------------------------------------------------------------------


@pytest.mark.tensorflow
def test_checkpoint_with_a_lambda_layer_is_refused_not_run(tmp_path):
    import keras

    marker = tmp_path / "lambda-ran"
    code = f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]"

    inputs = keras.Input(shape=(4,))
    outputs = keras.layers.Dense(3)(keras.layers.Lambda(eval(code))(inputs))
    path = tmp_path / "evil.keras"
    keras.Model(inputs, outputs).save(path)
    marker.unlink(missing_ok=True)
    with pytest.raises(ComposerError, match="Lambda") as error:
        load_checkpoint(path)
    assert "\n" not in str(error.value)
    assert not marker.exists(), "loading the checkpoint ran the Lambda's code"
    # the control: loading it unsafely does run the code, so the check above can see it
    unsafe = keras.saving.load_model(path, safe_mode=False)
    unsafe(np.zeros((1, 4), "float32"))
    assert marker.exists()


@pytest.mark.tensorflow
def test_load_checkpoint_errors_are_one_line(tmp_path, vocab):
    with pytest.raises(ComposerError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.keras")
    path = tmp_path / "model.keras"
    build_model(ModelConfig(len(vocab), **TINY)).save(path)
    assert load_checkpoint(path, len(vocab)).output_shape[-1] == len(vocab)
    with pytest.raises(ComposerError, match="vocabulary") as error:
        load_checkpoint(path, len(vocab) + 1)
    assert "\n" not in str(error.value)


@pytest.mark.tensorflow
def test_time_signature_sets_the_metre_and_the_bars_of_an_unprimed_sample(run_dir, vocab, tmp_path):
    import pretty_midi

    paths = written_paths(invoke("generate", run_dir, "--epoch", 1, "--num", 2, "--bars", 2, "--time-signature", "3/4", "--out", tmp_path))
    for path in paths:
        midi = pretty_midi.PrettyMIDI(str(path))
        assert [(t.numerator, t.denominator) for t in midi.time_signature_changes] == [(3, 4)]
        # 2 bars of 3/4 are 6 quarters: the file lasts exactly that, not 8 quarters of 4/4
        assert midi.get_end_time() == pytest.approx(6 * 60 / RUN_BPM, abs=1e-3)
    assert "--time-signature '7/5'" in one_line_error(invoke("generate", run_dir, "--epoch", 1, "--time-signature", "7/5", "--out", tmp_path / "x"))

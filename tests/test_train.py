"""Training: the run directory a CLI run leaves, checkpoints that reproduce their epoch, resume,
reproducibility, the data windows, the model's cuDNN conditions, a distribution strategy, and
the classic "hello" lecture example trained with the real trainer.

Models are tiny (16 units, embedding 8, windows of 32, a dozen chorales): every run takes seconds.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import composer.train
from composer.runs import Run

from train_fixtures import (
    RecordingFit,
    archive_weight_names,
    copy_run,
    error_lines,
    find_source,
    history,
    invoke,
    logits,
    losses,
    probe_tokens,
    train_cli,
)

REPO = Path(__file__).resolve().parent.parent


# ---- shared runs (module scope: each is trained once; the corpus is conftest.py's) ---------------------


@pytest.fixture(scope="module")
def main_run(tmp_path_factory, corpus):
    """`train CORPUS --epochs 4 --save-at 2,4` (seed 0), recording the live model's logits at each epoch end."""
    run = tmp_path_factory.mktemp("runs") / "main"
    recorder = RecordingFit(composer.train.fit, probe_tokens(corpus))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(composer.train, "fit", recorder)
        result = train_cli(corpus, run, "--epochs", "4", "--save-at", "2,4", "--decay", "constant")
    return run, recorder, result


@pytest.fixture(scope="module")
def six_epoch_run(tmp_path_factory, corpus) -> Path:
    """The same settings as main_run (seed 0), trained 6 epochs without interruption."""
    run = tmp_path_factory.mktemp("runs") / "six"
    train_cli(corpus, run, "--epochs", "6", "--save-at", "6", "--decay", "constant")
    return run


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory, main_run, corpus):
    """A copy of main_run resumed to 6 epochs (its constant learning rate comes from run.json)."""
    run = copy_run(main_run[0], tmp_path_factory.mktemp("runs") / "resumed")
    result = train_cli(corpus, run, "--epochs", "6", "--save-at", "2,4,6", "--resume")
    return run, result


def steps_per_epoch(corpus: Path, window: int = 32, batch: int = 8) -> int:
    from composer.dataset import TokenCorpus, training_windows

    train = TokenCorpus.load(corpus).split("train")
    _, steps = training_windows(train, window, batch, 0, 1)
    stream = sum(len(p) for p in train)
    # an epoch covers the stream about once
    assert steps * batch * window <= stream < (steps + 2) * batch * window
    return steps


# ---- a CLI run and its files ---------------------------------------------------------------


@pytest.mark.tensorflow
def test_train_writes_the_run_directory(main_run, corpus):
    run, _, result = main_run
    assert sorted(p.name for p in (run / "checkpoints").glob("*.keras")) == [
        "epoch-0002.keras",
        "epoch-0004.keras",
        "last.keras",
    ]
    for name in ("run.json", "history.csv", "baseline.json"):
        assert (run / name).is_file(), name
    assert Run(run).last_epoch() == 4

    lines = (run / "history.csv").read_text().splitlines()
    assert lines[0].split(",") == ["epoch", "loss", "val_loss", "val_bits_per_note", "seconds"]
    assert len(lines) == 5 and all(len(line.split(",")) == 5 for line in lines[1:])
    rows = history(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    for row in rows:
        assert all(math.isfinite(row[k]) for k in ("loss", "val_loss", "val_bits_per_note"))
        assert row["seconds"] > 0
        assert row["val_bits_per_note"] > row["val_loss"] / math.log(2)  # > 1 token per note
    assert rows[-1]["loss"] < rows[0]["loss"]

    config = json.loads((run / "run.json").read_text())
    assert config["model"]["units"] == 16 and config["model"]["embedding"] == 8
    assert config["model"]["vocab_size"] == config["vocabulary"]["size"] == 147
    assert config["train"]["window"] == 32 and config["train"]["batch"] == 8
    assert config["train"]["epochs"] == 4 and config["train"]["save_at"] == [2, 4]
    assert config["data"]["train_pieces"] + config["data"]["validation_pieces"] == 12

    baseline = json.loads((run / "baseline.json").read_text())
    assert baseline["best"]["bits_per_note"] > 0
    assert baseline["best"]["bits_per_note"] == min(s["bits_per_note"] for s in baseline["scores"])

    assert "epoch 4/4" in result.output
    assert "n-gram baseline" in result.output


@pytest.mark.tensorflow
def test_each_checkpoint_reproduces_its_epoch_alone(main_run, corpus, tmp_path):
    """Load each kept file by itself (copied away from its run) and compare with the logits the
    in-memory model gave at the end of that epoch, after the file was written."""
    import shutil

    from composer.model import load_checkpoint

    run, recorder, _ = main_run
    probe = probe_tokens(corpus)
    assert sorted(recorder.logits) == [1, 2, 3, 4]
    assert recorder.saved[2] == run / "checkpoints" / "epoch-0002.keras"
    assert recorder.saved[1] is None and recorder.saved[3] is None
    for epoch in (2, 4):
        alone = tmp_path / f"alone-{epoch}" / "model.keras"
        alone.parent.mkdir()
        shutil.copy(run / "checkpoints" / f"epoch-{epoch:04d}.keras", alone)
        model = load_checkpoint(alone, vocab_size=147)
        np.testing.assert_allclose(logits(model, probe), recorder.logits[epoch], rtol=0, atol=1e-5)
    last = load_checkpoint(run / "checkpoints" / "last.keras", vocab_size=147)
    np.testing.assert_allclose(logits(last, probe), recorder.logits[4], rtol=0, atol=1e-5)
    # the comparison has teeth: the epochs really differ
    assert np.abs(recorder.logits[2] - recorder.logits[4]).max() > 1e-3


@pytest.mark.tensorflow
def test_kept_checkpoints_leave_the_optimizer_out(main_run):
    """Kept epochs are for sampling; only last.keras carries the optimizer (train.save_model says so)."""
    import keras

    run, _, _ = main_run
    kept = run / "checkpoints" / "epoch-0002.keras"
    last = run / "checkpoints" / "last.keras"
    assert any(n.startswith("optimizer/") for n in archive_weight_names(last))
    assert not any(n.startswith("optimizer/") for n in archive_weight_names(kept)), (
        "epoch checkpoint stores optimizer variables"
    )
    assert getattr(keras.saving.load_model(kept), "optimizer", None) is None
    assert kept.stat().st_size < last.stat().st_size


@pytest.mark.tensorflow
def test_cli_reports_the_files(main_run):
    _, _, result = main_run
    for name in ("run.json", "history.csv", "last.keras", "epoch-0002.keras", "epoch-0004.keras", "baseline.json"):
        assert re.search(rf"wrote \S*{re.escape(name)}", result.output), name


# ---- resume --------------------------------------------------------------------------------


@pytest.mark.tensorflow
def test_resume_continues_history_checkpoints_and_optimizer(resumed_run, main_run, corpus):
    import keras

    run, result = resumed_run
    rows = history(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[:4] == history(main_run[0])  # earlier epochs are kept, not redone
    assert sorted(Run(run).saved_epochs()) == [2, 4, 6]
    assert (run / "checkpoints" / "epoch-0002.keras").read_bytes() == (
        main_run[0] / "checkpoints" / "epoch-0002.keras"
    ).read_bytes()
    assert Run(run).last_epoch() == 6
    model = keras.saving.load_model(run / "checkpoints" / "last.keras")
    assert int(model.optimizer.iterations.numpy()) == 6 * steps_per_epoch(corpus)
    assert "epoch 5/6" in result.output and "epoch 1/" not in result.output


@pytest.mark.tensorflow
def test_resume_is_exactly_an_uninterrupted_run_without_dropout(tmp_path, corpus):
    """Same data per epoch and the optimizer state carried over: 2 + 1 epochs == 3 epochs."""
    from composer.model import load_checkpoint

    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ("--dropout", "0", "--save-at", "3")
    train_cli(corpus, straight, "--epochs", "3", *common)
    train_cli(corpus, split, "--epochs", "2", *common)
    train_cli(corpus, split, "--epochs", "3", "--resume", *common)
    assert len(losses(split)) == 3 and losses(split) == losses(straight)
    probe = probe_tokens(corpus)
    a = logits(load_checkpoint(straight / "checkpoints" / "epoch-0003.keras"), probe)
    b = logits(load_checkpoint(split / "checkpoints" / "epoch-0003.keras"), probe)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


@pytest.mark.tensorflow
def test_resume_is_exactly_an_uninterrupted_run_with_dropout(resumed_run, six_epoch_run):
    assert losses(resumed_run[0]) == losses(six_epoch_run)


@pytest.mark.tensorflow
def test_resume_when_already_trained_says_so(tmp_path, main_run, corpus):
    run = copy_run(main_run[0], tmp_path / "done")
    result = train_cli(corpus, run, "--epochs", "4", "--resume")
    assert "already trained 4 epochs" in result.output
    assert len(history(run)) == 4


def test_resume_without_a_run_is_a_one_line_error(tmp_path, corpus):
    result = invoke("train", corpus, "--out", tmp_path / "nothing", *("--epochs", "2", "--resume"))
    assert result.exit_code == 1
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    assert "Traceback" not in result.output
    assert not (tmp_path / "nothing" / "checkpoints").exists()


@pytest.mark.tensorflow
def test_training_into_an_existing_run_needs_resume(tmp_path, main_run, corpus):
    run = copy_run(main_run[0], tmp_path / "again")
    before = (run / "history.csv").read_text()
    result = invoke("train", corpus, "--out", run, "--epochs", "2", "--units", "16")
    assert result.exit_code == 1
    lines = error_lines(result)
    assert len(lines) == 1 and "--resume" in lines[0], lines
    assert "Traceback" not in result.output
    assert (run / "history.csv").read_text() == before


@pytest.mark.tensorflow
def test_resume_with_a_corpus_of_another_vocabulary_is_a_one_line_error(tmp_path, main_run):
    other = tmp_path / "velocity"
    made = invoke("tokenize", *sorted((REPO / "midi_data" / "bach_chorales").glob("*.mid"))[:6],
                  "--out", other, "--velocity-bins", "8", "--no-cache", "--jobs", "1", "--validation", "0.3")
    assert made.exit_code == 0, made.output
    run = copy_run(main_run[0], tmp_path / "run")
    before = (run / "history.csv").read_text()
    result = invoke("train", other, "--out", run, "--epochs", "6", "--resume")
    assert result.exit_code == 1
    lines = error_lines(result)
    assert len(lines) == 1 and "vocabulary" in lines[0], lines
    assert "Traceback" not in result.output
    assert (run / "history.csv").read_text() == before


# ---- reproducibility ---------------------------------------------------------------------------


@pytest.mark.tensorflow
def test_same_seed_same_losses(main_run, six_epoch_run):
    """Seed 0 twice (4 and 6 epochs): epochs 1-4 are identical, numbers and all."""
    assert losses(six_epoch_run)[:4] == losses(main_run[0])
    assert [r["val_loss"] for r in history(six_epoch_run)[:4]] == [r["val_loss"] for r in history(main_run[0])]


@pytest.mark.tensorflow
def test_another_seed_other_losses_and_save_every(tmp_path, main_run, corpus):
    run = tmp_path / "seed1"
    train_cli(corpus, run, "--epochs", "3", "--save-at", "1", "--save-every", "2", "--seed", "1")
    assert len(losses(run)) == 3
    assert all(a != b for a, b in zip(losses(run), losses(main_run[0])[:3]))
    assert sorted(Run(run).saved_epochs()) == [1, 2]  # --save-at 1 and every 2nd epoch
    assert json.loads((run / "run.json").read_text())["train"]["seed"] == 1


def test_malformed_save_at_is_a_one_line_error(tmp_path, corpus):
    result = invoke("train", corpus, "--out", tmp_path / "x", "--epochs", "2", "--save-at", "1,two")
    assert result.exit_code == 1
    lines = error_lines(result)
    assert len(lines) == 1 and "--save-at" in lines[0], lines
    assert not (tmp_path / "x").exists()


# ---- info ------------------------------------------------------------------------------------------


@pytest.mark.tensorflow
def test_info_lists_checkpoints_with_epochs_bits_and_sizes(main_run):
    run = main_run[0]
    result = invoke("info", run)
    assert result.exit_code == 0, result.output
    assert "2 x 16 LSTM" in result.output and "vocabulary 147" in result.output and "4 epochs" in result.output
    rows = {row["epoch"]: row for row in history(run)}
    found = {}
    for line in result.output.splitlines():
        match = re.match(r"(epoch (\d+)|last \(epoch (\d+)\))\s+([\d.]+|nan)\s+([\d.]+) MB\s+(\S+)$", line.strip())
        if match:
            epoch = int(match.group(2) or match.group(3))
            found[match.group(1)] = epoch
            assert float(match.group(4)) == pytest.approx(rows[epoch]["val_bits_per_note"], abs=6e-4)
            assert float(match.group(5)) == pytest.approx(Path(match.group(6)).stat().st_size / 1e6, abs=6e-3)
    assert found == {"epoch 2": 2, "epoch 4": 4, "last (epoch 4)": 4}, result.output


def test_info_on_something_else_is_a_one_line_error(tmp_path):
    result = invoke("info", tmp_path)
    assert result.exit_code == 1
    assert len(error_lines(result)) == 1 and "not a training run" in result.output


# ---- the model's structure -------------------------------------------------------------------


@pytest.fixture
def fused_calls(monkeypatch) -> list[dict]:
    """Every call an LSTM makes to Keras's fused (cuDNN) kernel, as Keras itself judges it.

    keras.layers.LSTM tries ``backend.lstm`` first unless something rules the kernel out (a
    recurrent dropout, use_cudnn=False); the TensorFlow backend then takes it where its own
    argument check passes and a GPU is there. The recorder notes Keras's check and whether a
    mask came along, then declines, so the layer computes on CPU as it would without a GPU.
    """
    import sys

    import keras  # noqa: F401  loads keras.src and the TensorFlow backend

    backend = sys.modules["keras.src.layers.rnn.lstm"].backend
    tf_rnn = sys.modules["keras.src.backend.tensorflow.rnn"]
    calls = []

    def record(inputs, h, c, mask, kernel, recurrent_kernel, bias, activation, recurrent_activation, *args, unroll=False, **kwargs):
        calls.append({"supported": tf_rnn._do_lstm_arguments_support_cudnn(activation, recurrent_activation, unroll, bias is not None), "masked": mask is not None})
        raise NotImplementedError

    monkeypatch.setattr(backend, "lstm", record)
    return calls


@pytest.mark.tensorflow
def test_the_recorder_sees_what_keeps_an_lstm_off_the_fused_kernel(fused_calls):
    import keras

    x = np.zeros((1, 3, 2), "float32")
    keras.layers.LSTM(4)(x, training=True)
    keras.layers.LSTM(4, recurrent_dropout=0.1)(x, training=True)  # never tries the kernel
    keras.layers.LSTM(4, use_cudnn=False)(x, training=True)  # nor this one
    keras.layers.LSTM(4, activation="relu")(x, training=True)
    keras.layers.LSTM(4, unroll=True)(x, training=True)
    keras.Sequential([keras.layers.Embedding(10, 4, mask_zero=True), keras.layers.LSTM(4)])(np.ones((1, 3), "int32"))
    assert fused_calls == [
        {"supported": True, "masked": False},
        {"supported": False, "masked": False},
        {"supported": False, "masked": False},
        {"supported": True, "masked": True},
    ]


@pytest.mark.tensorflow
@pytest.mark.parametrize("preset", ["small", "full"])
def test_presets_keep_the_cudnn_conditions(preset, fused_calls):
    """In training (dropouts on) every LSTM of the preset's model tries the fused kernel, with
    arguments Keras accepts for it and no mask (a mask would need right-padding for cuDNN)."""
    import keras

    from composer.config import ModelConfig
    from composer.model import build_model

    model = build_model(ModelConfig.preset(preset, vocab_size=147))
    lstms = [layer for layer in model.layers if isinstance(layer, keras.layers.LSTM)]
    assert len(lstms) >= 2
    model(np.ones((2, 8), "int32"), training=True)
    assert fused_calls == [{"supported": True, "masked": False}] * len(lstms)


# ---- training windows ------------------------------------------------------------------------


def all_batches(pieces, window, batch, seed, epoch, pitch_tokens=None, transpose=0):
    from composer.dataset import training_windows

    dataset, steps = training_windows(pieces, window, batch, seed, epoch, pitch_tokens, transpose)
    batches = [(x.numpy(), y.numpy()) for x, y in dataset]
    assert len(batches) == steps
    return batches


@pytest.fixture(scope="module")
def corpus_pieces(corpus):
    from composer.dataset import TokenCorpus

    loaded = TokenCorpus.load(corpus)
    return loaded.split("train"), loaded.vocab


def edge_pieces(vocab, count: int = 8, seed: int = 3) -> list[np.ndarray]:
    """Pieces whose pitches reach one end of the range (low and high pieces alternate), so that
    many windows can be moved only one way, and those spanning two pieces not at all."""
    from composer.tokens import BOS, EOS

    rng = np.random.default_rng(seed)
    low, high = vocab.config.pitch_low, vocab.config.pitch_high
    ranges = [[low, low + 1, low + 2, 60, 64], [57, 60, high - 2, high - 1, high]]
    pieces = []
    for i in range(count):
        tokens = [BOS]
        for _ in range(40):
            tokens.append(vocab.shift_token(int(rng.choice([3, 6, 12]))))
            for pitch in sorted(rng.choice(ranges[i % 2], rng.integers(1, 3), replace=False)):
                tokens += [vocab.pitch_token(int(pitch)), vocab.duration_token(int(rng.choice([3, 6, 12])))]
        pieces.append(np.array(tokens + [EOS], np.int32))
    return pieces


@pytest.mark.tensorflow
@pytest.mark.parametrize("source", ["chorales", "edges"])
def test_windows_are_stream_slices_or_whole_window_transpositions(source, corpus_pieces):
    """Each window (inputs and the last target) is a slice of the stream of training pieces, with
    all its pitch tokens moved by one shift of at most ±transpose that keeps every pitch in range."""
    train, vocab = corpus_pieces
    pieces = train if source == "chorales" else edge_pieces(vocab)
    stream = np.concatenate(pieces).astype(np.int32)
    first, count = vocab.pitch_offset, len(vocab.pitches)
    lowest, highest = vocab.pitch_token(vocab.config.pitch_low), vocab.pitch_token(vocab.config.pitch_high)
    window, batch, transpose = 32, 8, 5
    origins = []  # (source slice, shift) per window
    for epoch in (1, 2) if source == "edges" else (1,):
        for x, y in all_batches(pieces, window, batch, 0, epoch, (first, count), transpose):
            assert x.shape == (batch, window) and y.shape == (batch, window)
            assert x.dtype == y.dtype and np.issubdtype(x.dtype, np.integer)
            np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # targets are the inputs moved by one
            for row in np.concatenate([x, y[:, -1:]], axis=1):
                found = find_source(row, stream, first, count)
                assert found, f"window {row.tolist()} is neither a slice nor a transposed slice"
                start, shift = min(found, key=lambda f: abs(f[1]))  # any of them is a valid origin
                assert abs(shift) <= transpose
                pitches = row[(row >= first) & (row < first + count)] - first
                assert pitches.size == 0 or (pitches.min() >= 0 and pitches.max() < count)
                origins.append((stream[start : start + len(row)], shift))
    shifts = np.array([shift for _, shift in origins])
    assert (shifts > 0).any() and (shifts < 0).any()
    if source == "chorales":
        assert (shifts != 0).mean() > 0.5, "transposition hardly ever happens"
    else:
        at_bottom = [shift for slice_, shift in origins if (slice_ == lowest).any() and not (slice_ == highest).any()]
        at_top = [shift for slice_, shift in origins if (slice_ == highest).any() and not (slice_ == lowest).any()]
        assert len(at_bottom) > 10 and len(at_top) > 10
        assert min(at_bottom) >= 0 and max(at_bottom) > 0  # moved, but only upwards
        assert max(at_top) <= 0 and min(at_top) < 0  # moved, but only downwards


@pytest.mark.tensorflow
@pytest.mark.parametrize("pitch_tokens,transpose", [(None, 5), ("vocab", 0)])
def test_windows_without_transposition_are_exact_slices(pitch_tokens, transpose, corpus_pieces):
    train, vocab = corpus_pieces
    tokens = (vocab.pitch_offset, len(vocab.pitches)) if pitch_tokens == "vocab" else None
    stream = np.concatenate(train).astype(np.int32)
    view = np.lib.stride_tricks.sliding_window_view(stream, 33)
    keys = {row.tobytes() for row in view}
    for x, y in all_batches(train, 32, 8, 0, 1, tokens, transpose):
        for row in np.concatenate([x, y[:, -1:]], axis=1):
            assert row.astype(np.int32).tobytes() in keys


@pytest.mark.tensorflow
def test_windows_depend_on_seed_and_epoch_only(corpus_pieces):
    train, vocab = corpus_pieces
    tokens = (vocab.pitch_offset, len(vocab.pitches))
    a = all_batches(train, 32, 8, 7, 3, tokens, 5)
    b = all_batches(train, 32, 8, 7, 3, tokens, 5)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    other_epoch = all_batches(train, 32, 8, 7, 4, tokens, 5)
    other_seed = all_batches(train, 32, 8, 8, 3, tokens, 5)
    assert not np.array_equal(np.stack([x for x, _ in a]), np.stack([x for x, _ in other_epoch]))
    assert not np.array_equal(np.stack([x for x, _ in a]), np.stack([x for x, _ in other_seed]))


@pytest.mark.tensorflow
def test_windows_reach_every_start_including_the_last(corpus_pieces):
    """Every start offset whose window fits must be possible, also the one ending on the final token
    (stateless_uniform's maxval is exclusive)."""
    from composer.tokens import BOS, EOS

    window = 4
    piece = np.array([BOS, 10, 11, 12, 13, 14, EOS], np.int32)  # 7 tokens: starts 0, 1, 2 fit a window + 1
    starts = set()
    for epoch in range(1, 6):
        for x, _ in all_batches([piece], window, 64, 0, epoch):
            starts.update(int(np.flatnonzero(piece == row[0])[0]) for row in x)
    assert starts == {0, 1, 2}


@pytest.mark.tensorflow
def test_too_short_a_corpus_is_a_clear_error():
    from composer import ComposerError
    from composer.dataset import training_windows

    with pytest.raises(ComposerError, match="fewer than one window"):
        training_windows([np.arange(10, dtype=np.int32)], 32, 8, 0, 1)


# ---- the "hello" lecture example ---------------------------------------------------------------


@pytest.mark.tensorflow
def test_hello_the_lecture_example(tmp_path):
    """A character model of "hello" trained by composer.train.fit: after "hel" it must say l, after
    "hell" o -- the same input letter, two answers, so the second needs the LSTM's memory."""
    import keras

    from composer.config import ModelConfig
    from composer.model import build_model
    from composer.tokens import BOS, EOS
    from composer.config import TrainConfig
    from composer.train import compile_model, fit

    ids = {"h": 3, "e": 4, "l": 5, "o": 6}  # after PAD, BOS, EOS
    letters = {v: k for k, v in ids.items()}
    piece = np.array([BOS] + [ids[c] for c in "hello" * 400] + [EOS], np.int32)
    config = TrainConfig(epochs=8, save_at=(), window=8, batch=16, learning_rate=0.01, transpose=0, seed=0)
    keras.utils.set_random_seed(0)
    model = build_model(ModelConfig(vocab_size=7, embedding=8, units=32, layers=2, dropout=0.0))
    compile_model(model, config)
    run = Run(tmp_path / "hello")
    results = fit(model, run, [piece], [], 0, config)

    assert [r.epoch for r in results] == list(range(1, 9))
    assert [r["epoch"] for r in run.history()] == list(range(1, 9))
    assert math.isnan(results[-1].val_loss)  # no validation pieces
    assert results[-1].loss < results[0].loss
    assert run.last.exists() and not Run(run.root).saved_epochs()

    word = np.array([[ids[c] for c in "hell"]], np.int32)
    out = np.asarray(model(word, training=False))[0]
    predicted = "".join(letters.get(int(i), "?") for i in out.argmax(axis=-1))
    assert predicted == "ello", predicted
    probabilities = np.exp(out - out.max(axis=-1, keepdims=True))
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    assert probabilities[2, ids["l"]] > 0.8 and probabilities[3, ids["o"]] > 0.8


# ---- distribution strategy -------------------------------------------------------------------


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import composer.train as train

    seen = []
    real = train.distribution_strategy

    def recording(name):
        strategy = real(name)
        seen.append(strategy)
        return strategy

    train.distribution_strategy = recording
    config = train.TrainConfig(strategy="mirrored", epochs=1, save_at=(1,), window=32, batch=8, seed=0)
    summary = train.train_run(
        Path(sys.argv[1]), Path(sys.argv[2]), config,
        model_overrides={"units": 16, "embedding": 8}, report=lambda line: None,
    )
    print("STRATEGY", type(seen[0]).__name__)
    print("REPLICAS", seen[0].num_replicas_in_sync)
    print("EPOCHS", [r.epoch for r in summary.epochs])
    print("LOSS", summary.epochs[0].loss)
    """
)


@pytest.mark.tensorflow
def test_mirrored_strategy_on_two_logical_cpus(tmp_path, corpus):
    run = tmp_path / "mirrored"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(corpus), str(run)],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "STRATEGY MirroredStrategy" in done.stdout
    assert "REPLICAS 2" in done.stdout, done.stdout
    assert "EPOCHS [1]" in done.stdout
    assert math.isfinite(float(re.search(r"LOSS (\S+)", done.stdout).group(1)))
    assert [r["epoch"] for r in history(run)] == [1]
    assert sorted(Run(run).saved_epochs()) == [1] and Run(run).last_epoch() == 1


def test_unknown_strategy_is_a_one_line_error(tmp_path, corpus):
    result = invoke("train", corpus, "--out", tmp_path / "x", "--epochs", "1", "--strategy", "tpu", "--units", "16")
    assert result.exit_code == 1
    assert "unknown strategy" in result.output and "Traceback" not in result.output


@pytest.mark.tensorflow
def test_multiworker_without_tf_config_is_a_one_line_error(tmp_path, corpus, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    result = invoke("train", corpus, "--out", tmp_path / "x", "--epochs", "1", "--strategy", "multiworker", "--units", "16")
    assert result.exit_code == 1
    assert "TF_CONFIG" in result.output and "Traceback" not in result.output


@pytest.mark.tensorflow
def test_regularizers_land_in_run_json_resume_exactly_and_keep_cudnn(tmp_path, corpus, fused_calls):
    """--input-dropout, --embedding-dropout and --weight-decay: recorded, trained with (AdamW, the
    LSTMs' dropout), resumed with the same masks and decay, and the fused-kernel conditions kept."""
    import keras

    from composer.model import load_checkpoint

    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ("--input-dropout", "0.2", "--embedding-dropout", "0.1", "--weight-decay", "0.05", "--save-at", "3")
    train_cli(corpus, straight, "--epochs", "3", *common)
    train_cli(corpus, split, "--epochs", "2", *common)
    train_cli(corpus, split, "--epochs", "3", "--save-at", "3", "--resume")
    settings = json.loads((split / "run.json").read_text())
    assert settings["model"]["input_dropout"] == 0.2 and settings["model"]["embedding_dropout"] == 0.1
    assert settings["train"]["weight_decay"] == 0.05
    # the same masks and decay: equal to float rounding (a mask drawn differently moves it by ~1e-2)
    assert len(losses(split)) == 3 and losses(split) == pytest.approx(losses(straight), abs=5e-5)
    plain = tmp_path / "plain"
    train_cli(corpus, plain, "--epochs", "1", "--save-at", "1")
    assert losses(plain)[0] != losses(straight)[0]  # the options change training
    model = keras.saving.load_model(split / "checkpoints" / "last.keras")
    assert type(model.optimizer).__name__ == "AdamW" and model.optimizer.weight_decay == pytest.approx(0.05)
    lstms = [layer for layer in model.layers if isinstance(layer, keras.layers.LSTM)]
    assert lstms and all(l.dropout == 0.2 and l.recurrent_dropout == 0 for l in lstms)
    fused_calls.clear()  # training's calls were recorded too (and all tried the kernel)
    model(np.ones((2, 8), "int32"), training=True)  # the fused kernel is tried by every LSTM, as loaded
    assert fused_calls == [{"supported": True, "masked": False}] * len(lstms)
    kinds = [type(layer).__name__ for layer in model.layers[1:]]
    assert kinds[:2] == ["Embedding", "Dropout"] and model.get_layer("embedding_dropout").noise_shape == (None, None, 1)
    probe = probe_tokens(corpus)
    a = logits(load_checkpoint(straight / "checkpoints" / "epoch-0003.keras"), probe)
    b = logits(load_checkpoint(split / "checkpoints" / "epoch-0003.keras"), probe)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-3)
    result = invoke("train", corpus, "--out", split, "--epochs", "4", "--resume", "--weight-decay", "0.1")
    assert result.exit_code != 0 and "--weight-decay 0.1 (run: 0.05)" in result.output


def test_small_preset_carries_the_swept_regularizers_and_old_runs_still_match_it():
    from composer.config import ModelConfig
    from composer.train import _matching_preset

    small = ModelConfig.preset("small", vocab_size=147)
    assert (small.dropout, small.input_dropout, small.embedding_dropout) == (0.35, 0.1, 0.05)
    assert ModelConfig.preset("small", vocab_size=147, dropout=0.2, input_dropout=0.0).input_dropout == 0.0
    # a run.json written before presets were recorded (and before these regularizers) is still "small"
    assert _matching_preset({"embedding": 128, "units": 256, "layers": 2, "dropout": 0.2}) == "small"
    assert _matching_preset({"embedding": 128, "units": 384, "layers": 2, "dropout": 0.35}) == ""

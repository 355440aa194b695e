"""What a kill, a second process, a full disk, a changed setting or a bad checkpoint can do to a run:
never lose data, never a traceback, always one line that says what to do."""

from __future__ import annotations

import errno
import json
import random
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import composer.train
from composer.runs import Run

from train_fixtures import TINY, copy_run, error_lines, history, invoke, losses, make_corpus, probe_tokens, train_cli, logits

PYTHON = Path(sys.executable)
COMPOSER = PYTHON.parent / "composer"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus") / "tokens")


@pytest.fixture(scope="module")
def run(tmp_path_factory, corpus) -> Path:
    """A tiny run of 2 epochs, kept 1 and 2."""
    root = tmp_path_factory.mktemp("runs") / "run"
    train_cli(corpus, root, "--epochs", "2", "--save-at", "1,2")
    return root


def one_error(result, *fragments: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = error_lines(result)
    errors = [line for line in lines if line.startswith("error:")]
    # progress lines may come first (a baseline, finished epochs); the error is one line, the last
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


# ---- resume takes the run's settings and refuses others -------------------------------------------


def test_resume_needs_nothing_but_the_run(tmp_path, run):
    again = copy_run(run, tmp_path / "again")
    result = invoke("train", "--out", again, "--resume", "--epochs", "3", "--save-at", "3")
    assert result.exit_code == 0, result.output
    assert len(history(again)) == 3
    settings = json.loads((again / "run.json").read_text())
    assert settings["model"]["units"] == 16 and settings["train"]["window"] == 32  # TINY, from run.json


@pytest.mark.parametrize(
    "options,named",
    [
        (("--units", "32"), ["--units 32 (run: 16)"]),
        (("--seed", "7", "--window", "64"), ["--window 64 (run: 32)", "--seed 7 (run: 0)"]),
        (("--preset", "full"), ["--preset full (run: small)"]),
        (("--learning-rate", "0.5"), ["--learning-rate 0.5"]),
    ],
)
def test_resume_refuses_other_settings_naming_each(tmp_path, run, options, named):
    again = copy_run(run, tmp_path / "again")
    before = (again / "run.json").read_text()
    result = invoke("train", "--out", again, "--resume", "--epochs", "3", *options)
    one_error(result, *named)
    assert (again / "run.json").read_text() == before and len(history(again)) == 2


def test_resume_refuses_another_corpus_of_the_same_vocabulary(tmp_path, run):
    other = make_corpus(tmp_path / "other", count=10, first=30)  # other chorales, same tokenizer
    again = copy_run(run, tmp_path / "again")
    corpus_before = sorted(p.name for p in (again / "corpus").glob("*")) if (again / "corpus").exists() else []
    baseline_before = (again / "baseline.json").read_text()
    one_error(invoke("train", other, "--out", again, "--resume", "--epochs", "3"), "not the corpus this run was trained on")
    assert (again / "baseline.json").read_text() == baseline_before
    after = sorted(p.name for p in (again / "corpus").glob("*")) if (again / "corpus").exists() else []
    assert after == corpus_before


# ---- a second process, a full disk, leftovers ----------------------------------------------------------


def test_a_second_trainer_into_the_same_run_is_refused_naming_the_holder(tmp_path, run, corpus):
    again = copy_run(run, tmp_path / "again")
    holder = subprocess.Popen(
        [str(PYTHON), "-c", "import sys, time\nfrom composer.storage import FolderLock\n"
         f"with FolderLock({str(again)!r}, 'training'):\n    print('held', flush=True)\n    time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = invoke("train", "--out", again, "--resume", "--epochs", "3")
        one_error(result, f"process {holder.pid}", "training already in progress")
        assert len(history(again)) == 2
        tokenize = invoke("tokenize", *sorted(Path(corpus).parent.glob("x")), "--out", again)  # no sources: its own error
        assert tokenize.exit_code != 0
    finally:
        holder.kill()
        holder.wait()


def test_disk_full_during_training_is_one_line_and_resumable(tmp_path, corpus, monkeypatch):
    run_dir = tmp_path / "full"
    real_save = composer.train.save_model
    calls = {"n": 0}

    def save_until_full(model, path, include_optimizer, epoch=None):
        calls["n"] += 1
        if epoch == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(model, path, include_optimizer, epoch)

    monkeypatch.setattr(composer.train, "save_model", save_until_full)
    result = invoke("train", corpus, "--out", run_dir, *TINY, "--epochs", "3", "--save-at", "3")
    line = one_error(result, "disk full", "nothing was half-written", "epoch 1 is complete", "--resume")
    assert "composer train --out" in line
    assert Run(run_dir).last_epoch() == 1
    monkeypatch.setattr(composer.train, "save_model", real_save)
    assert invoke("train", "--out", run_dir, "--resume", "--epochs", "3").exit_code == 0
    assert [row["epoch"] for row in history(run_dir)] == [1, 2, 3]


def test_resume_removes_what_a_killed_writer_left(tmp_path, run):
    again = copy_run(run, tmp_path / "again")
    leftovers = [again / "checkpoints" / ".last.keras.0123456789ab.tmp.keras", again / ".history.csv.ba9876543210.tmp.csv"]
    for path in leftovers:
        path.write_bytes(b"")
    assert invoke("train", "--out", again, "--resume", "--epochs", "3").exit_code == 0
    assert not any(path.exists() for path in leftovers)


def test_the_epoch_is_recorded_with_the_weights(tmp_path, run):
    """A kill after last.keras was replaced but before last.json: the archive still says which epoch."""
    again = copy_run(run, tmp_path / "again")
    (again / "checkpoints" / "last.json").write_text(json.dumps({"epoch": 1}))  # as if killed in between
    assert Run(again).last_epoch() == 2
    with zipfile.ZipFile(again / "checkpoints" / "epoch-0001.keras") as archive:
        assert json.loads(archive.read("composer.json")) == {"epoch": 1}
    result = invoke("train", "--out", again, "--resume", "--epochs", "3")
    assert "epoch 3/3" in result.output and "epoch 2/3" not in result.output
    assert [row["epoch"] for row in history(again)] == [1, 2, 3]


# ---- bad checkpoints and --out ---------------------------------------------------------------------------


def test_info_checks_every_checkpoint_file(tmp_path, run):
    from composer.model import ModelConfig, build_model

    again = copy_run(run, tmp_path / "again")
    first = again / "checkpoints" / "epoch-0001.keras"
    first.write_bytes(first.read_bytes()[: first.stat().st_size // 2])
    build_model(ModelConfig(147, embedding=8, units=16, layers=3)).save(again / "checkpoints" / "epoch-0002.keras")
    result = invoke("info", again)
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.output.splitlines()
    assert any("epoch 1" in line and "DAMAGED: not a loadable checkpoint" in line for line in lines), result.output
    assert any("epoch 2" in line and "DAMAGED: has more LSTM layers" in line for line in lines), result.output
    assert any("last (epoch 2)" in line and "DAMAGED" not in line for line in lines)
    assert "2 checkpoint files damaged" in lines[-1]


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path, run):
    import keras

    from composer.model import ModelConfig, build_model

    again = copy_run(run, tmp_path / "again")
    build_model(ModelConfig(147, embedding=8, units=32, layers=2)).save(again / "checkpoints" / "epoch-0001.keras")
    one_error(invoke("generate", again, "--epoch", "1", "--tokens", "10"), "layer 'lstm_0' has units 32 but run.json says 16")
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(147, 8, name="embedding")(tokens)
    x = keras.layers.GRU(16, return_sequences=True, name="lstm_0")(x)
    x = keras.layers.LSTM(16, return_sequences=True, name="lstm_1")(x)
    keras.Model(tokens, keras.layers.Dense(147, name="logits")(x)).save(again / "checkpoints" / "epoch-0002.keras")
    one_error(invoke("generate", again, "--epoch", "2", "--tokens", "10"), "layer 'lstm_0' is a GRU, not an LSTM")


@pytest.mark.parametrize("command", ["tokenize", "train", "generate", "compare"])
def test_out_pointing_to_a_file_is_one_line(tmp_path, run, corpus, command):
    target = tmp_path / "a-file"
    target.write_text("keep me")
    args = {
        "tokenize": ["tokenize", Path(corpus).parent, "--out", target],
        "train": ["train", corpus, "--out", target, *TINY, "--epochs", "1"],
        "generate": ["generate", run, "--epoch", "2", "--tokens", "10", "--out", target],
        "compare": ["compare", run, "--epochs", "1,2", "--samples", "2", "--num", "1", "--bars", "1", "--out", target],
    }[command]
    one_error(invoke(*args), str(target))
    assert target.read_text() == "keep me"


# ---- kill -9 at random moments ------------------------------------------------------------------------------


@pytest.mark.parametrize("wanted", [3, pytest.param(10, marks=pytest.mark.slow)])
def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path, corpus, wanted):
    """SIGKILLs at random moments of a tiny 40-epoch run (anywhere: inside an epoch, while writing
    history or a checkpoint), each followed by a resume: the same losses and the same final
    weights as the run that was never interrupted. Ten kills with -m slow (about 100 s)."""
    # tiny epochs take a fraction of a second: 40 of them keep the run alive across all the kills
    common = [*TINY, "--epochs", "40", "--save-at", "20,40"]
    straight = tmp_path / "straight"
    subprocess.run([str(COMPOSER), "train", str(corpus), "--out", str(straight), *common], check=True, capture_output=True, timeout=300)
    killed = tmp_path / "killed"
    rng = random.Random(20261126 + wanted)
    kills, attempts = 0, 0
    while True:
        attempts += 1
        assert attempts < 40, "the run never finished"
        resume = ["--resume"] if Run(killed).last.exists() else []
        process = subprocess.Popen(
            [str(COMPOSER), "train", str(corpus), "--out", str(killed), *common, *resume],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        if kills < wanted:
            # after start-up (about 3-5 s here), somewhere in the epochs that follow
            time.sleep(rng.uniform(3.5, 8.0))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
                kills += 1
                continue
        _, stderr = process.communicate(timeout=300)
        if process.returncode == 0 and Run(killed).last_epoch() == 40:
            break
        assert process.returncode in (0, -signal.SIGKILL), stderr
    assert kills >= wanted
    assert losses(killed) == losses(straight)
    from composer.model import load_checkpoint

    probe = probe_tokens(corpus)
    for name in ("epoch-0020.keras", "epoch-0040.keras"):
        a = logits(load_checkpoint(straight / "checkpoints" / name), probe)
        b = logits(load_checkpoint(killed / "checkpoints" / name), probe)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert not list(killed.rglob("*.tmp*")), "temporaries left behind after the last resume"

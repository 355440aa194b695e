"""What a kill, a second process, a full disk, a changed setting or a bad checkpoint can do to a run:
never lose data, never a traceback, always one line that says what to do."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import composer.train
from composer.runs import Run

from train_fixtures import CHORALES, TINY, copy_run, history, invoke, losses, make_corpus, one_error, probe_tokens, train_cli, logits, tree

PYTHON = Path(sys.executable)
COMPOSER = PYTHON.parent / "composer"


# ---- resume takes the run's settings and refuses others -------------------------------------------


@pytest.mark.tensorflow
def test_resume_needs_nothing_but_the_run(tmp_path, run):
    again = copy_run(run, tmp_path / "again")
    result = invoke("train", "--out", again, "--resume", "--epochs", "3", "--save-at", "3")
    assert result.exit_code == 0, result.output
    assert len(history(again)) == 3
    settings = json.loads((again / "run.json").read_text())
    assert settings["model"]["units"] == 16 and settings["train"]["window"] == 32  # TINY, from run.json


@pytest.mark.tensorflow
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


@pytest.mark.tensorflow
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


@pytest.mark.tensorflow
def test_a_second_trainer_into_the_same_run_is_refused_naming_the_holder(tmp_path, run):
    """Valid commands, refused only because another process holds the run's lock: the message
    names that process, and the same train command succeeds once the holder is gone."""
    again = copy_run(run, tmp_path / "again")
    holder = subprocess.Popen(
        [str(PYTHON), "-c", "import sys, time\nfrom composer.storage import FolderLock\n"
         f"with FolderLock({str(again)!r}, 'training'):\n    print('held', flush=True)\n    time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    files = sorted(p.relative_to(again) for p in again.rglob("*"))
    try:
        assert holder.stdout.readline().strip() == "held"
        result = invoke("train", "--out", again, "--resume", "--epochs", "3")
        one_error(result, f"{again}: training by process {holder.pid}, which holds it")
        assert len(history(again)) == 2
        # another command writing into the held folder: a valid tokenize, refused by the same lock
        # (the message names what the holder does, not what the refused command wanted)
        tokenize = invoke("tokenize", sorted(CHORALES.glob("*.mid"))[0], "--out", again, "--no-cache")
        one_error(tokenize, f"{again}: training by process {holder.pid}, which holds it")
        assert sorted(p.relative_to(again) for p in again.rglob("*")) == files
    finally:
        holder.kill()
        holder.wait()
    assert invoke("train", "--out", again, "--resume", "--epochs", "3").exit_code == 0
    assert len(history(again)) == 3


@pytest.mark.tensorflow
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


@pytest.mark.tensorflow
def test_resume_removes_what_a_killed_writer_left(tmp_path, run):
    again = copy_run(run, tmp_path / "again")
    leftovers = [again / "checkpoints" / ".last.keras.0123456789ab.tmp.keras", again / ".history.csv.ba9876543210.tmp.csv"]
    for path in leftovers:
        path.write_bytes(b"")
    assert invoke("train", "--out", again, "--resume", "--epochs", "3").exit_code == 0
    assert not any(path.exists() for path in leftovers)


@pytest.mark.tensorflow
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


@pytest.mark.tensorflow
def test_info_checks_every_checkpoint_file(tmp_path, run):
    from composer.config import ModelConfig
    from composer.model import build_model

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


@pytest.mark.tensorflow
def test_a_checkpoint_of_another_architecture_is_refused(tmp_path, run):
    import keras

    from composer.config import ModelConfig
    from composer.model import build_model

    again = copy_run(run, tmp_path / "again")
    build_model(ModelConfig(147, embedding=8, units=32, layers=2)).save(again / "checkpoints" / "epoch-0001.keras")
    one_error(invoke("generate", again, "--epoch", "1", "--tokens", "10"), "layer 'lstm_0' has units 32 but run.json says 16")
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(147, 8, name="embedding")(tokens)
    x = keras.layers.GRU(16, return_sequences=True, name="lstm_0")(x)
    x = keras.layers.LSTM(16, return_sequences=True, name="lstm_1")(x)
    keras.Model(tokens, keras.layers.Dense(147, name="logits")(x)).save(again / "checkpoints" / "epoch-0002.keras")
    one_error(invoke("generate", again, "--epoch", "2", "--tokens", "10"), "layer 'lstm_0' is a GRU, not an LSTM")


@pytest.mark.tensorflow
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


def epochs_written(run: Path) -> int:
    """Rows of history.csv (written atomically: never half a file), 0 before the first."""
    try:
        return max(0, len((run / "history.csv").read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


@pytest.mark.tensorflow
@pytest.mark.parametrize("wanted", [3, pytest.param(10, marks=pytest.mark.slow)])
def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path, wanted):
    """SIGKILLs at random moments of a tiny run (anywhere in an epoch: training, writing history
    or a checkpoint), each followed by a resume: the same losses and the same final weights as
    the run that was never interrupted. Ten kills with -m slow.

    Each life is killed after it has finished 1 to 3 epochs of its own, at a random point of the
    next one (up to one epoch's time later): kills land in training, not in the seconds of
    start-up, however busy the machine, and every life moves the run on. So the run needs at
    most 4 epochs per kill and a few to finish, and the uninterrupted run trains alongside.
    """
    corpus = make_corpus(tmp_path / "tokens", count=4)  # 3 training pieces: short epochs
    epochs = 4 * wanted + 4
    common = [*TINY, "--epochs", str(epochs), "--save-at", f"{epochs // 2},{epochs}"]
    straight = tmp_path / "straight"
    reference = subprocess.Popen([str(COMPOSER), "train", str(corpus), "--out", str(straight), *common],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed = tmp_path / "killed"
    rng = random.Random(20261126 + wanted)
    kills, attempts = 0, 0
    epoch_time = 0.2  # a first guess, replaced by the time between two rows once one is seen
    while True:
        attempts += 1
        assert attempts < 2 * wanted + 5, "the run never finished"
        resume = ["--resume"] if Run(killed).last.exists() else []
        start = epochs_written(killed)
        process = subprocess.Popen(
            [str(COMPOSER), "train", str(corpus), "--out", str(killed), *common, *resume],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        if kills < wanted:
            target, seen, row_at = start + rng.randint(1, 3), start, None
            while process.poll() is None and seen < target:
                time.sleep(0.01)
                if epochs_written(killed) > seen:
                    now = time.monotonic()
                    if row_at is not None:
                        epoch_time = now - row_at
                    seen, row_at = epochs_written(killed), now
            time.sleep(rng.uniform(0.0, epoch_time))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
                kills += 1
                continue
        _, stderr = process.communicate(timeout=300)
        if process.returncode == 0 and Run(killed).last_epoch() == epochs:
            break
        assert process.returncode in (0, -signal.SIGKILL), stderr
    _, stderr = reference.communicate(timeout=300)
    assert reference.returncode == 0, stderr
    assert kills >= wanted
    assert losses(killed) == losses(straight)
    from composer.model import load_checkpoint

    probe = probe_tokens(corpus)
    for name in (f"epoch-{epochs // 2:04d}.keras", f"epoch-{epochs:04d}.keras"):
        a = logits(load_checkpoint(straight / "checkpoints" / name), probe)
        b = logits(load_checkpoint(killed / "checkpoints" / name), probe)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert not list(killed.rglob("*.tmp*")), "temporaries left behind after the last resume"



# ---- issue 19: nothing lost --------------------------------------------------------------------------------

# Two `composer compare` of one run, started in the same second (the clock is frozen in both):
# each records the MIDI files it wrote, as it wrote them, for the page to be checked against.
CONCURRENT_COMPARE = r"""
import hashlib, json, sys
from datetime import datetime
from pathlib import Path

import composer.compare, composer.corpus
from composer.compare import CompareSettings, compare


class Frozen(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime(2026, 1, 2, 3, 4, 5)


composer.compare.datetime = Frozen
written = {}
real_write = composer.corpus.write_midi


def recording(notes, path, *args, **kwargs):
    path = real_write(notes, path, *args, **kwargs)
    written[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return path


composer.corpus.write_midi = recording
settings = CompareSettings(num=2, samples=2, bars=1, temperature=float(sys.argv[2]))
result = compare(Path(sys.argv[1]), "1,2", settings, lambda line: None)
print(json.dumps({"page": str(result.page), "midi": written}))
"""


def dead_pid() -> int:
    """The process id of a process that has ended."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.tensorflow
def test_two_compares_at_once_give_two_correct_pages(tmp_path, run):
    """Same run, same second: two pages (STAMP and STAMP-2), each holding exactly the files its own
    process wrote, with its own settings; what killed compares left behind is removed."""
    again = copy_run(run, tmp_path / "again")
    pages_root = again / "compare"
    abandoned = pages_root / f".20250101-000000.building-{socket.gethostname()}-{dead_pid()}-0badf00d"
    abandoned.mkdir(parents=True)
    (abandoned / "half.wav").write_bytes(b"RIFF")
    (pages_root / "20250101-000000").mkdir()  # the empty folder it had claimed
    older = pages_root / ".20240101-000000.building"  # left by a version that named no owner
    older.mkdir()
    (older / "half.mid").write_bytes(b"MThd")
    temperatures = ("0.5", "1.5")
    processes = [
        subprocess.Popen([str(PYTHON), "-c", CONCURRENT_COMPARE, str(again), t], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for t in temperatures
    ]
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    results = [json.loads(stdout.splitlines()[-1]) for stdout, _ in outputs]
    pages = [Path(result["page"]).parent for result in results]
    assert sorted(page.name for page in pages) == ["20260102-030405", "20260102-030405-2"]
    assert sorted(p.name for p in pages_root.iterdir()) == sorted(page.name for page in pages), "leftovers removed, nothing else"
    for result, page, temperature in zip(results, pages, temperatures):
        assert json.loads((page / "metrics.json").read_text())["settings"]["temperature"] == temperature
        assert {p.name: sha256(p) for p in page.glob("*.mid")} == result["midi"], page
        assert (page / "index.html").exists()
    assert results[0]["midi"] != results[1]["midi"], "the temperatures should give other samples"


def test_building_folders_of_live_owners_are_kept(tmp_path):
    from composer.storage import remove_abandoned

    host = socket.gethostname()
    kept = [
        tmp_path / f".a.building-{host}-{os.getpid()}-00000000",  # this process: alive
        tmp_path / f".b.building-another-host-{dead_pid()}-00000000",  # another host's: not ours to judge
    ]
    gone = tmp_path / f".c.building-{host}-{dead_pid()}-00000000"
    for folder in (*kept, gone):
        folder.mkdir()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "index.html").write_text("a page published meanwhile")
    assert remove_abandoned(tmp_path) == [gone]
    assert all(folder.is_dir() for folder in kept)
    assert (tmp_path / "c" / "index.html").exists(), "a claimed folder that holds a page is not removed"


def test_train_refuses_a_folder_of_someone_elses_untouched(tmp_path, corpus):
    mine = tmp_path / "my folder"
    mine.mkdir()
    (mine / "run.json").write_text('{"my": "notes"}')
    (mine / "history.csv").write_text("date,amount\n2026-01-02,12.50\n")
    (mine / "baseline.json").write_text("[1, 2, 3]")
    before = tree(mine)
    line = one_error(invoke("train", corpus, "--out", mine, *TINY, "--epochs", "1"), "did not write", "baseline.json, history.csv, run.json")
    assert str(mine) in line
    assert tree(mine) == before and sorted(p.name for p in mine.iterdir()) == ["baseline.json", "history.csv", "run.json"], "not even a lock file"


@pytest.mark.tensorflow
def test_train_takes_up_a_run_it_started_itself(tmp_path, run, corpus):
    """A run killed before its first epoch (its lock and yardstick there, no run.json yet) is trained
    afresh; a run with its run.json is handled as before (resumable, or refused without --resume)."""
    early = tmp_path / "early"
    early.mkdir()
    (early / ".lock").write_text("12345")
    (early / "baseline.json").write_text((run / "baseline.json").read_text())
    train_cli(corpus, early, "--epochs", "1")
    assert Run(early).last_epoch() == 1
    one_error(invoke("train", corpus, "--out", early, *TINY, "--epochs", "1"), "--resume")
    assert invoke("train", "--out", early, "--resume", "--epochs", "2").exit_code == 0


def rewrite_epoch_entry(archive_path: Path, entry: bytes | None) -> None:
    """last.keras with its composer.json replaced by ``entry`` (None: left out)."""
    with zipfile.ZipFile(archive_path) as archive:
        members = {name: archive.read(name) for name in archive.namelist() if name != "composer.json"}
    with zipfile.ZipFile(archive_path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        if entry is not None:
            archive.writestr("composer.json", entry)


@pytest.mark.tensorflow
@pytest.mark.parametrize(
    "damage,named",
    [
        ("last.keras epoch -3", "last.keras: epoch -3 is not a whole number from 0 to 2"),
        ("last.keras epoch inf", "last.keras: epoch inf"),
        ("last.keras epoch 99", "last.keras: epoch 99"),
        ("last.keras epoch 1.5", "last.keras: epoch 1.5"),
        ("last.json epoch -1", "last.json: epoch -1"),
        ("last.json garbage", "last.json: damaged"),
        ("history epoch -1", "history.csv, line 2: epoch -1.0"),
        ("history not a number", "history.csv, line 3: loss 'lots' is not a number"),
        ("checkpoint name", "epoch-0099.keras: epoch 99"),
    ],
)
def test_an_epoch_out_of_range_in_any_file_is_one_line_naming_it(tmp_path, run, damage, named):
    """A negative epoch in last.keras made --resume train epochs -2..13 and replace kept checkpoints."""
    again = copy_run(run, tmp_path / "again")
    last, state = again / "checkpoints" / "last.keras", again / "checkpoints" / "last.json"
    if damage.startswith("last.keras"):
        value = damage.split()[-1]
        rewrite_epoch_entry(last, ('{"epoch": %s}' % ("Infinity" if value == "inf" else value)).encode())
    elif damage.startswith("last.json"):
        rewrite_epoch_entry(last, None)  # as in runs made before the epoch went into the archive
        state.write_text('{"epoch": -1}' if damage.endswith("-1") else "{not json")
    elif damage == "history epoch -1":
        text = (again / "history.csv").read_text().splitlines()
        (again / "history.csv").write_text("\n".join([text[0], "-1" + text[1][text[1].index(","):], *text[2:]]) + "\n")
    elif damage == "history not a number":
        text = (again / "history.csv").read_text().splitlines()
        fields = text[2].split(",")
        (again / "history.csv").write_text("\n".join([*text[:2], ",".join([fields[0], "lots", *fields[2:]])]) + "\n")
    else:
        shutil.copy(again / "checkpoints" / "epoch-0002.keras", again / "checkpoints" / "epoch-0099.keras")
    before = tree(again)
    commands = [["train", "--out", again, "--resume", "--epochs", "4"], ["info", again]]
    if not damage.startswith("history"):  # generate reads no history
        commands.append(["generate", again, "--epoch", "last", "--tokens", "10"])
    for command in commands:
        one_error(invoke(*command), named)
    unlocked = lambda files: {k: v for k, v in files.items() if k != ".lock"}  # noqa: E731  (holds the last holder's pid)
    assert unlocked(tree(again)) == unlocked(before), "nothing in the run changed"


def test_disk_full_while_retokenizing_leaves_the_old_corpus_whole(tmp_path, corpus, monkeypatch):
    """The second file of the new corpus fails to write: the old one still loads, pieces and tokens paired."""
    from composer import ComposerError
    from composer.dataset import TokenCorpus, tokenize_corpus

    from train_fixtures import chorale_files

    out = tmp_path / "tokens"
    make_corpus(out, count=4)
    old = TokenCorpus.load(out)
    real_open = io.open
    calls = []

    def full_on_second(file, mode="r", *args, **kwargs):
        # every writer of the corpus's files opens them through io.open (pathlib, zipfile, numpy)
        if "w" in mode and Path(file).parent == out:
            calls.append(Path(file).name)
            if len(calls) == 2:
                raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(io, "open", full_on_second)
    with pytest.raises(ComposerError, match="disk full while writing the corpus"):
        tokenize_corpus(chorale_files(12), out, jobs=1, cache_dir=None)
    monkeypatch.setattr(io, "open", real_open)
    assert len(calls) == 2, calls
    kept = TokenCorpus.load(out)
    assert [p.name for p in kept.pieces] == [p.name for p in old.pieces]
    assert all(np.array_equal(a, b) for a, b in zip(kept.tokens, old.tokens))
    assert sorted(p.name for p in out.iterdir()) == [".lock", "corpus.json", "tokens.npz", "vocab.json"], "no temporaries left"


def test_a_kill_between_the_renames_is_found_on_load(tmp_path):
    """tokens.npz of a new corpus beside the old corpus.json: one line, never pieces paired with
    another corpus's tokens (also for corpora written before corpus.json held the files' hashes)."""
    from composer import ComposerError
    from composer.dataset import TokenCorpus

    small, large = make_corpus(tmp_path / "small", count=4), make_corpus(tmp_path / "large", count=12)
    mixed = tmp_path / "mixed"
    shutil.copytree(small, mixed)
    shutil.copy(large / "tokens.npz", mixed / "tokens.npz")
    with pytest.raises(ComposerError, match="tokens.npz is not the one corpus.json was written with"):
        TokenCorpus.load(mixed)
    record = json.loads((mixed / "corpus.json").read_text())
    del record["files"]
    (mixed / "corpus.json").write_text(json.dumps(record))
    with pytest.raises(ComposerError, match=r"tokens.npz \(12 pieces\) does not belong to corpus.json \(4 records\)"):
        TokenCorpus.load(mixed)


# ---- epochs: labels resolved once, sensible keeping ---------------------------------------------------------


def kept_only(run: Path, dest: Path, *epochs: int) -> Path:
    """A copy of ``run`` keeping only these epoch checkpoints (last.keras stays): the state after a
    resume or Ctrl-C past the kept epochs, or of a run that kept none."""
    again = copy_run(run, dest)
    for path in (again / "checkpoints").glob("epoch-*.keras"):
        if int(path.stem.split("-")[1]) not in epochs:
            path.unlink()
    return again


@pytest.mark.tensorflow
def test_epoch_labels_resolve_in_every_state(tmp_path, run):
    from composer import ComposerError

    checkpoints = lambda r, text: [(label, path.name) for label, path in Run(r).resolve_many(text)]  # noqa: E731
    stopped = kept_only(run, tmp_path / "stopped", 1)  # last completed epoch 2, not kept
    assert checkpoints(stopped, "last") == [("epoch-0002", "last.keras")]
    assert checkpoints(stopped, "2") == [("epoch-0002", "last.keras")]
    assert checkpoints(stopped, "all") == [("epoch-0001", "epoch-0001.keras"), ("epoch-0002", "last.keras")]
    assert checkpoints(stopped, "2,last,1") == [("epoch-0001", "epoch-0001.keras"), ("epoch-0002", "last.keras")]
    with pytest.raises(ComposerError, match=r"no checkpoint for epoch 7 \(available: 1, 2, last\)"):
        Run(stopped).resolve("7")
    nothing_kept = kept_only(run, tmp_path / "none")
    assert checkpoints(nothing_kept, "all") == checkpoints(nothing_kept, "last") == [("epoch-0002", "last.keras")]
    copied = copy_run(run, tmp_path / "copied")  # as the shipped reference run: kept epochs, no last.keras
    (copied / "checkpoints" / "last.keras").unlink()
    (copied / "checkpoints" / "last.json").unlink()
    assert checkpoints(copied, "last") == [("epoch-0002", "epoch-0002.keras")]
    assert checkpoints(copied, "all") == [("epoch-0001", "epoch-0001.keras"), ("epoch-0002", "epoch-0002.keras")]
    # pinned: the resolved files answer, whatever the run holds since
    pinned = Run(stopped).pinned(Run(stopped).resolve_many("last"))
    (stopped / "checkpoints" / "last.keras").rename(stopped / "checkpoints" / "moved.keras")
    assert pinned.resolve("2") == ("epoch-0002", stopped / "checkpoints" / "last.keras")


@pytest.mark.tensorflow
def test_compare_and_generate_take_the_last_epoch_when_it_was_not_kept(tmp_path, run):
    """The normal state after a resume or Ctrl-C: compare --epochs last sampled the first epoch,
    then failed with 'no checkpoint for epoch 2'."""
    from composer.compare import CompareSettings, compare

    stopped = kept_only(run, tmp_path / "stopped", 1)
    tiny = CompareSettings(num=1, samples=2, bars=1)
    assert compare(stopped, "last", tiny, lambda line: None).epochs == ["epoch 2"]
    assert compare(stopped, "all", tiny, lambda line: None).epochs == ["epoch 1", "epoch 2"]
    for epoch in ("2", "last"):
        result = invoke("generate", stopped, "--epoch", epoch, "--tokens", "10")
        assert result.exit_code == 0, result.output
        assert "epoch-0002" in result.output


@pytest.mark.tensorflow
def test_a_short_run_keeps_its_last_epoch_and_says_so(tmp_path, corpus):
    short = tmp_path / "short"
    result = train_cli(corpus, short, "--epochs", "2")  # the default --save-at 100,150 is never reached
    assert "keeping epoch 2, the last" in result.output and "100,150" in result.output
    assert sorted(Run(short).saved_epochs()) == [2]
    beyond = tmp_path / "beyond"
    result = train_cli(corpus, beyond, "--epochs", "2", "--save-at", "2,3")
    assert "--save-at 3: after the last epoch (2)" in result.output
    assert sorted(Run(beyond).saved_epochs()) == [2]


@pytest.mark.parametrize("epochs", ["0", "-3"])
def test_no_epochs_to_train_is_one_line_and_writes_nothing(tmp_path, corpus, epochs):
    out = tmp_path / "run"
    one_error(invoke("train", corpus, "--out", out, *TINY, "--epochs", epochs), f"--epochs {epochs}: train at least 1 epoch")
    assert not out.exists()

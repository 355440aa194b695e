"""Multi-worker training for real: two `composer train --strategy multiworker` processes on
127.0.0.1, each with its own TF_CONFIG, against one process training on the union of their
windows with the same global batch.

The 1-process reference is built on the test side: ``training_windows``, as train.py imports
it, is wrapped so that a worker-count-1 call with the global batch yields, step by step, worker 0's
batch followed by worker 1's (exactly what the two workers' gradients sum over). No hook in
the package itself.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import composer.dataset
import composer.train
from composer import ComposerError
from composer.train import cluster_role
from train_fixtures import TINY, history, invoke, losses, make_corpus

REPO = Path(__file__).resolve().parent.parent
DEADLINE_S = 120
PER_WORKER_BATCH = 8
# no dropout of any kind: the union run must match the two workers to float rounding (with the
# small preset's input and token dropout the losses differ by ~1e-4 relative: not checked here)
COMMON = ["--epochs", "2", "--save-at", "2", "--seed", "1", "--dropout", "0", "--input-dropout", "0", "--embedding-dropout", "0", "--decay", "constant"]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def worker_env(ports: list[int], index: int) -> dict:
    tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
    return {
        **os.environ,
        "TF_CONFIG": json.dumps(tf_config),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }


def start_workers(corpus: Path, outs: list[Path], *extra: str) -> list[subprocess.Popen]:
    ports = free_ports(len(outs))
    command = [sys.executable, "-m", "composer.cli", "train", str(corpus), *TINY, *COMMON, "--strategy", "multiworker", *extra]
    return [
        subprocess.Popen(
            command + ["--out", str(out)], env=worker_env(ports, i), cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i, out in enumerate(outs)
    ]


def finish(workers: list[subprocess.Popen], deadline_s: float = DEADLINE_S) -> list[tuple[int | None, str]]:
    """Wait for every worker until the deadline, then kill what is left; (exit code, output) each."""
    end = time.monotonic() + deadline_s
    results = []
    for worker in workers:
        try:
            output, _ = worker.communicate(timeout=max(1.0, end - time.monotonic()))
            results.append((worker.returncode, output))
        except subprocess.TimeoutExpired:
            for other in workers:
                other.kill()
            output, _ = worker.communicate()
            results.append((None, output))
    return results


def union_windows(real):
    """training_windows whose single-worker call at the global batch yields both workers' batches, concatenated."""
    import tensorflow as tf

    def windows(pieces, window, batch, seed, epoch, pitch_tokens=None, transpose=0, worker=(0, 1)):
        if worker != (0, 1) or batch != 2 * PER_WORKER_BATCH:
            return real(pieces, window, batch, seed, epoch, pitch_tokens, transpose, worker)
        parts = [real(pieces, window, PER_WORKER_BATCH, seed, epoch, pitch_tokens, transpose, (i, 2)) for i in range(2)]
        assert parts[0][1] == parts[1][1]
        joined = tf.data.Dataset.zip(parts[0][0], parts[1][0]).map(
            lambda a, b: (tf.concat([a[0], b[0]], 0), tf.concat([a[1], b[1]], 0))
        )
        return joined, parts[0][1]

    return windows


def weights(path: Path) -> list[np.ndarray]:
    from composer.model import load_checkpoint

    return [np.asarray(w) for w in load_checkpoint(path).get_weights()]


@pytest.mark.tensorflow
def test_two_workers_on_loopback_train_as_one_process_on_the_union(tmp_path, monkeypatch):
    corpus = make_corpus(tmp_path / "tokens", count=6)  # 5 training pieces: 5 synchronized steps an epoch (12 gave 10)
    chief, other = tmp_path / "chief", tmp_path / "other"
    results = finish(start_workers(corpus, [chief, other]))
    for index, (code, output) in enumerate(results):
        assert code == 0, f"worker {index} exit {code}\n{output[-3000:]}"
    assert "Traceback" not in results[0][1] + results[1][1]

    assert sorted(p.name for p in (chief / "checkpoints").glob("*.keras")) == ["epoch-0002.keras", "last.keras"]
    assert [row["epoch"] for row in history(chief)] == [1, 2]
    assert (chief / "run.json").exists() and (chief / "history.csv").exists()
    assert not other.exists() or not any(other.iterdir()), sorted(other.rglob("*"))

    reference = tmp_path / "reference"
    monkeypatch.setattr(composer.train, "training_windows", union_windows(composer.dataset.training_windows))
    result = invoke("train", corpus, "--out", reference, *TINY, *COMMON, "--batch", str(2 * PER_WORKER_BATCH))
    assert result.exit_code == 0, result.output

    assert len(losses(chief)) == 2
    np.testing.assert_allclose(losses(chief), losses(reference), rtol=1e-4)
    trained, expected = weights(chief / "checkpoints" / "last.keras"), weights(reference / "checkpoints" / "last.keras")
    assert len(trained) == len(expected)
    for a, b in zip(trained, expected):
        np.testing.assert_allclose(a, b, atol=1e-4)
    assert losses(chief)[1] < losses(chief)[0]  # it did train

    # --resume: the other worker reads the chief's run (here a copy, as on a shared folder) and
    # still writes nothing into it
    shutil.copytree(chief, other, dirs_exist_ok=True)
    results = finish(start_workers(corpus, [chief, other], "--epochs", "3", "--save-at", "2,3", "--resume"))
    for index, (code, output) in enumerate(results):
        assert code == 0, f"resumed worker {index} exit {code}\n{output[-3000:]}"
    assert [row["epoch"] for row in history(chief)] == [1, 2, 3]
    assert (chief / "checkpoints" / "epoch-0003.keras").exists()
    assert [row["epoch"] for row in history(other)] == [1, 2] and not (other / "checkpoints" / "epoch-0003.keras").exists()


def test_cluster_role_reads_tf_config():
    cluster = {"worker": ["a:1", "b:2", "c:3"]}
    assert cluster_role(json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})) == (0, 3, True)
    assert cluster_role(json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 2}})) == (2, 3, False)
    with_chief = {"chief": ["a:1"], "worker": ["b:2"]}
    assert cluster_role(json.dumps({"cluster": with_chief, "task": {"type": "worker", "index": 0}})) == (1, 2, False)
    assert cluster_role(json.dumps({"cluster": with_chief, "task": {"type": "chief", "index": 0}})) == (0, 2, True)
    for bad in ("not json", "{}", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 5}})):
        with pytest.raises(ComposerError, match="TF_CONFIG must look like"):
            cluster_role(bad)


def test_a_worker_resuming_without_the_chiefs_run_is_a_one_line_error(tmp_path, monkeypatch):
    corpus = make_corpus(tmp_path / "tokens", count=4)
    tf_config = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    result = invoke("train", corpus, "--out", tmp_path / "other", *TINY, "--epochs", "1", "--strategy", "multiworker", "--resume")
    assert result.exit_code == 1
    assert "worker 1: --resume needs the chief's run" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "other").exists()


@pytest.mark.tensorflow
def test_each_worker_reads_its_own_windows_and_one_worker_reads_todays(tmp_path):
    from composer.dataset import TokenCorpus, training_windows

    pieces = TokenCorpus.load(make_corpus(tmp_path / "tokens", count=6)).split("train")

    def first_batch(worker=None):
        extra = {} if worker is None else {"worker": worker}
        dataset, steps = training_windows(pieces, 32, 4, 0, 1, **extra)
        return next(iter(dataset))[0].numpy(), steps

    today, steps = first_batch()
    single, single_steps = first_batch((0, 1))
    (zero, zero_steps), (one, one_steps) = first_batch((0, 2)), first_batch((1, 2))
    assert np.array_equal(today, single) and steps == single_steps
    stream = sum(len(p) for p in pieces)
    assert zero_steps == one_steps == (stream - 1) // 32 // (4 * 2) < steps  # the global batch covers the stream once
    assert not np.array_equal(zero, one) and not np.array_equal(zero, today)
    with pytest.raises(ComposerError, match="no such worker"):
        training_windows(pieces, 32, 4, 0, 1, worker=(2, 2))

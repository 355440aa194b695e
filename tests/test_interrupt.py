"""Ctrl-C during training: the last completed epoch is kept whole, the exit is clean, resume continues."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from train_fixtures import TINY, history, make_corpus, train_cli

pytestmark = pytest.mark.tensorflow  # trains in a subprocess


def test_ctrl_c_keeps_the_last_epoch_and_says_how_to_resume(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", count=8)
    run = tmp_path / "run"
    command = [sys.executable, "-m", "composer.cli", "train", str(corpus), "--out", str(run), *TINY,
               "--epochs", "500", "--save-at", "500"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoints" / "last.json").exists():
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "no epoch finished in time"
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, output
    assert "Traceback" not in output
    assert "interrupted" in output and "--resume" in output
    done = len(history(run))
    assert done >= 1
    train_cli(corpus, run, "--epochs", str(done + 1), "--save-at", str(done + 1), "--resume")
    assert [row["epoch"] for row in history(run)] == list(range(1, done + 2))
    assert (run / "checkpoints" / f"epoch-{done + 1:04d}.keras").exists()

"""Ctrl-C landing in validation or while an epoch's files are written: answered within 2 s, with
the resume line, and the run left consistent (every history row has its checkpoint)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from composer.runs import Run

from train_fixtures import TINY, history, make_corpus, train_cli

pytestmark = pytest.mark.tensorflow  # trains tiny runs

# Runs `composer train` with validation made slow (calls of 0.4 s, each swallowing a
# KeyboardInterrupt as TensorFlow's C++ code can) or saving made slow (0.5 s a file), and a marker file
# saying which phase has begun, so the test can press Ctrl-C inside it. Only the phase under test
# is slowed, and only from epoch 2 on (there is a run to resume): nothing else waits.
DRIVER = """
import sys, time
from pathlib import Path
import composer.train as train
from composer.cli import main

marker, phase, run = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
begun = lambda: (run / "checkpoints" / "last.json").exists()  # from epoch 2: there is a run to resume
real_nll, real_save = train.per_token_nll, train.save_model

def slow_nll(model):
    inner = real_nll(model)
    def per_token(x, y):
        if phase == "validation" and begun():
            marker.write_text("validating")
            try:
                time.sleep(0.4)
            except KeyboardInterrupt:
                pass  # as a C++ call that swallowed it
        return inner(x, y)
    return per_token

def slow_save(*args, **kwargs):
    if phase == "saving" and begun():
        marker.write_text("saving")
        time.sleep(0.5)
    return real_save(*args, **kwargs)

train.per_token_nll = slow_nll
train.save_model = slow_save
if phase == "validation":  # a validation of many calls, each a chance for the Ctrl-C to land in
    train.validation_batches = lambda pieces, most: [[p] for p in pieces] * 5
sys.argv = ["composer", "train", *sys.argv[4:]]
main()
"""


def answered_after_ctrl_c(command: list[str], marker: Path) -> tuple[float, str, int]:
    """Start ``command``, press Ctrl-C once ``marker`` exists; (seconds until the 'interrupted'
    line, all output, exit code)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), line) for line in process.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            assert process.poll() is None, "".join(line for _, line in lines)
            assert time.monotonic() < deadline, "the phase never began"
            time.sleep(0.02)
        pressed = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        process.kill()
    output = "".join(line for _, line in lines)
    answered = next((at for at, line in lines if "interrupted" in line), None)
    assert answered is not None, output
    return answered - pressed, output, process.returncode


@pytest.mark.parametrize("phase", ["validation", "saving"])
def test_ctrl_c_in_validation_or_saving_is_answered_within_2_s(tmp_path, phase):
    corpus = make_corpus(tmp_path / "corpus", count=8)
    run = tmp_path / "run"
    marker = tmp_path / "marker"
    command = [sys.executable, "-c", DRIVER, str(marker), phase, str(run), str(corpus), "--out", str(run), *TINY,
               "--epochs", "50", "--save-at", "1,2,3"]
    seconds, output, code = answered_after_ctrl_c(command, marker)
    assert code == 130 and "Traceback" not in output, output
    assert "--resume" in output
    assert seconds < 2.0, f"answered {seconds:.1f} s after Ctrl-C\n{output}"
    # consistent: the history ends at the epoch last.keras holds, every kept epoch on disk
    rows = history(run)
    assert Run(run).last_epoch() == len(rows)
    assert all((run / "checkpoints" / f"epoch-{e:04d}.keras").exists() for e in (1, 2, 3) if e <= len(rows))
    train_cli(corpus, run, "--epochs", str(len(rows) + 1), "--resume")
    assert [row["epoch"] for row in history(run)] == list(range(1, len(rows) + 2))

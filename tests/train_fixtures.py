"""Helpers for tests/test_train.py: a tiny tokenized corpus, tiny CLI runs, reading what a run wrote.

Kept out of conftest.py on purpose (other test files own that); import from here.
Every model here is tiny (16 units, embedding 8, windows of 32) so a run takes seconds.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np

MIDI_DATA = Path(__file__).resolve().parent.parent / "midi_data"
CHORALES = MIDI_DATA / "bach_chorales"

TINY = ["--units", "16", "--embedding", "8", "--window", "32", "--batch", "8"]


def chorale_files(count: int = 12) -> list[Path]:
    files = sorted(CHORALES.glob("*.mid"))[:count]
    assert len(files) == count, f"expected {count} chorales in {CHORALES}"
    return files


def make_corpus(out: Path, count: int = 12, velocity_bins: int = 0, first: int = 0) -> Path:
    """Tokenize ``count`` bundled chorales from the ``first`` into ``out`` (no cache, 30 % validation)."""
    from composer.dataset import tokenize_corpus
    from composer.tokens import TokenizerConfig

    summary = tokenize_corpus(
        chorale_files(first + count)[first:],
        out,
        TokenizerConfig(velocity_bins=velocity_bins),
        jobs=1,
        cache_dir=None,
        validation_share=0.3,
    )
    assert summary.pieces == count and summary.train_pieces > 0 and summary.validation_pieces > 0, summary
    return out


def invoke(*args: str):
    """Run the composer CLI in-process; returns the Typer/Click result."""
    from typer.testing import CliRunner

    from composer.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def train_cli(corpus: Path, run: Path, *extra: str, tiny: bool = True):
    """`composer train CORPUS --out RUN [tiny sizes] extra...`; fails the test on a non-zero exit."""
    result = invoke("train", corpus, "--out", run, *(TINY if tiny else []), *extra)
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


def error_lines(result) -> list[str]:
    """The lines a failed command printed (stderr and stdout together), progress-bar noise removed."""
    text = result.output
    return [line for line in text.splitlines() if line.strip() and not line.startswith("epoch ")]


def one_error(result, *fragments: str) -> str:
    """The CLI failed with exit 1 and one error line, the last (progress lines such as a baseline
    or finished epochs may come first), holding every fragment; no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = error_lines(result)
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def tree(folder: Path) -> dict[str, str]:
    """Every file under a folder with its content's hash: to show that nothing in it changed."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def history(run: Path) -> list[dict]:
    from composer.runs import Run

    return Run(run).history()


def losses(run: Path) -> list[float]:
    return [row["loss"] for row in history(run)]


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def probe_tokens(corpus: Path, length: int = 64) -> np.ndarray:
    """A fixed (1, length) input: the opening of the first training piece."""
    from composer.dataset import TokenCorpus

    piece = TokenCorpus.load(corpus).split("train")[0]
    return np.asarray(piece[:length], dtype=np.int32)[None, :]


def logits(model, tokens: np.ndarray) -> np.ndarray:
    return np.asarray(model(tokens, training=False), dtype=np.float32)


def archive_weight_names(path: Path) -> list[str]:
    """Names of every array stored in a .keras archive's model.weights.h5."""
    import h5py

    with zipfile.ZipFile(path) as archive:
        data = archive.read("model.weights.h5")
    names: list[str] = []
    with h5py.File(io.BytesIO(data), "r") as h5:
        h5.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


class RecordingFit:
    """Wraps ``composer.train.fit`` so that, as each epoch ends (after its files are written),
    the logits of the in-memory model on a probe input are recorded by epoch."""

    def __init__(self, real_fit, probe: np.ndarray):
        self.real_fit = real_fit
        self.probe = probe
        self.logits: dict[int, np.ndarray] = {}
        self.saved: dict[int, Path | None] = {}

    def __call__(self, *args, **kwargs):
        bound = inspect.signature(self.real_fit).bind(*args, **kwargs)
        bound.apply_defaults()
        model = bound.arguments["model"]
        announce = bound.arguments["on_epoch"]

        def on_epoch(result):
            self.logits[result.epoch] = logits(model, self.probe)
            self.saved[result.epoch] = result.saved
            announce(result)

        bound.arguments["on_epoch"] = on_epoch
        return self.real_fit(*bound.args, **bound.kwargs)


def find_source(window: np.ndarray, stream: np.ndarray, pitch_first: int, pitch_count: int) -> list[tuple[int, int]]:
    """Every (start, shift) such that ``window`` equals stream[start:start+len] with its pitch
    tokens moved by ``shift`` (the same for the whole window) and every other token unchanged."""
    n = len(window)
    view = np.lib.stride_tricks.sliding_window_view(stream, n)
    source_pitch = (view >= pitch_first) & (view < pitch_first + pitch_count)
    window_pitch = (window >= pitch_first) & (window < pitch_first + pitch_count)
    diff = window[None, :] - view
    same_kinds = (source_pitch == window_pitch[None, :]).all(axis=1)
    others_equal = np.where(source_pitch, 0, diff).max(axis=1) == 0
    others_equal &= np.where(source_pitch, 0, diff).min(axis=1) == 0
    if window_pitch.any():
        pitch_diffs = np.where(source_pitch, diff, diff[:, window_pitch][:, :1])
        one_shift = (pitch_diffs == pitch_diffs[:, :1]).all(axis=1)
        shifts = diff[:, np.argmax(window_pitch)]
    else:
        one_shift = np.ones(len(view), bool)
        shifts = np.zeros(len(view), int)
    hits = np.flatnonzero(same_kinds & others_equal & one_shift)
    return [(int(s), int(shifts[s])) for s in hits]

"""`composer compare` end to end: a tiny run, its comparison page in a real browser, the shipped reference run."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from composer.cli import app
from composer.compare import CompareSettings, compare
from composer.dataset import tokenize_corpus
from composer.runs import Run
from composer.tokens import Vocabulary, encode_notes
from composer.train import TrainConfig, train_run
from test_report import ALL_MEDIA_READY, MEDIA_STATE, chromium_driver, require_chromium

ROOT = Path(__file__).resolve().parents[1]
CHORALES = ROOT / "midi_data" / "bach_chorales"
REFERENCE = ROOT / "outputs" / "bach-small-reference"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """Two epochs of a very small LSTM on a dozen chorales, keeping both epochs."""
    base = tmp_path_factory.mktemp("compare")
    sources = base / "midi"
    sources.mkdir()
    for path in sorted(CHORALES.glob("*.mid"))[:12]:
        shutil.copy(path, sources / path.name)
    tokenize_corpus([sources], base / "corpus", cache_dir=None, validation_share=0.3)
    run = base / "run"
    config = TrainConfig(epochs=2, save_at=(1, 2), window=64, batch=8)
    overrides = {"units": 16, "embedding": 8}
    train_run(base / "corpus", run, config, "small", overrides, report=lambda line: None)
    return run


def test_compare_writes_every_artifact(tiny_run, tmp_path):
    out = tmp_path / "page"
    result = compare(tiny_run, "1,2", CompareSettings(num=2, bars=2, seed=5), lambda line: None, out)
    assert result.page == out / "index.html" and result.page.exists()
    assert result.epochs == ["epoch 1", "epoch 2"]
    # two epochs plus the real continuation, two primers each: MIDI, WAV and piano roll per cell
    for suffix in (".mid", ".wav", ".png"):
        cells = [p for p in out.glob(f"*{suffix}") if p.stem not in ("curves", "pitch_classes")]
        assert len(cells) == 3 * 2, suffix
    saved = json.loads((out / "metrics.json").read_text())["metrics"]
    assert list(saved) == ["epoch 1", "epoch 2", "real continuation"]
    for row in ("epoch 1", "epoch 2"):
        assert math.isfinite(saved[row]["val_bits_per_note"]) and saved[row]["val_bits_per_note"] > 0
        assert math.isfinite(saved[row]["train_bits_per_note"])
        assert 0 <= saved[row]["overlap_mean"] <= 1
    # a real continuation copies nothing it generated: its scale consistency is a real chorale's
    assert saved["real continuation"]["scale_consistency"] > 0.8
    with open(out / "metrics.csv", newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["metric", "epoch 1", "epoch 2", "real continuation"]
    assert {row[0] for row in table[1:]} >= {"val_bits_per_note", "mean_longest_copy", "overlap_mean"}


def test_every_epoch_continues_the_same_primer(tiny_run, tmp_path):
    """Same primers and seeds for each checkpoint: only the weights differ."""
    from composer.corpus import read_piece

    out = tmp_path / "page"
    compare(tiny_run, "1,2", CompareSettings(num=2, bars=2, seed=1, primer_bars=1), lambda line: None, out)
    vocab = Vocabulary.from_dict(Run(tiny_run).config()["vocabulary"])
    for real in sorted(out.glob("real_*.mid")):
        column = real.stem.removeprefix("real_")
        opening = [n for n in read_piece(real).notes if n.start < 4]
        expected = encode_notes(opening, vocab)[:-1]
        for epoch in ("epoch-0001", "epoch-0002"):
            sample = encode_notes(read_piece(out / f"{epoch}_{column}.mid").notes, vocab)
            assert np.array_equal(sample[: len(expected)], expected), (epoch, column)


def test_comparison_page_plays_in_headless_chromium(tiny_run, tmp_path):
    require_chromium()
    from selenium.webdriver.support.ui import WebDriverWait

    out = tmp_path / "page & co"
    result = compare(tiny_run, "1,2", CompareSettings(num=2, bars=2), lambda line: None, out)
    driver = chromium_driver(tmp_path / "profile")
    try:
        driver.get(result.page.as_uri())
        WebDriverWait(driver, 20, poll_frequency=0.1).until(lambda d: d.execute_script(ALL_MEDIA_READY))
        state = driver.execute_script(MEDIA_STATE)
    finally:
        driver.quit()
    assert len(state["audio"]) == 3 * 2
    for audio in state["audio"]:
        assert audio["error"] is None and audio["duration"] > 0, audio
    assert len(state["images"]) == 3 * 2 + 2  # piano rolls plus the two plots
    for image in state["images"]:
        assert image["width"] > 0, image
    assert state["epochs"] == 2


def test_compare_cli_prints_table_and_page(tiny_run, tmp_path):
    result = CliRunner().invoke(app, ["compare", str(tiny_run), "--epochs", "all", "--num", "1", "--bars", "1", "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert "epoch 1" in result.output and "epoch 2" in result.output
    assert f"open {tmp_path / 'p' / 'index.html'}" in result.output


def test_compare_unknown_epoch_lists_available(tiny_run):
    result = CliRunner().invoke(app, ["compare", str(tiny_run), "--epochs", "1,7"])
    assert result.exit_code == 1
    assert "no checkpoint for epoch 7" in result.output and "available: 1, 2" in result.output
    assert "Traceback" not in result.output


def test_compare_with_a_primer_file(tiny_run, tmp_path):
    primer = sorted(CHORALES.glob("*.mid"))[-1]
    out = tmp_path / "page"
    result = compare(tiny_run, "2", CompareSettings(num=2, bars=1, primer=primer), lambda line: None, out)
    assert list(result.metrics) == ["epoch 2"]  # no real continuation for a primer file
    assert len(list(out.glob("epoch-0002_*.wav"))) == 2


def test_reference_run_checkpoints_load_and_compare(tmp_path, monkeypatch):
    """The shipped run: both checkpoints load alone, agree with run.json, and compare works."""
    from composer.model import load_checkpoint

    monkeypatch.chdir(ROOT)  # run.json names its source corpus relative to the repository

    run = Run(REFERENCE)
    config = run.config()
    vocab = Vocabulary.from_dict(config["vocabulary"])
    assert vocab == Vocabulary(), "the reference run's vocabulary no longer matches the default tokenizer"
    saved = run.saved_epochs()
    assert sorted(saved) == [100, 150]
    history = run.history()
    assert [row["epoch"] for row in history] == list(range(1, 151))
    for epoch in (100, 150):
        model = load_checkpoint(saved[epoch], len(vocab))
        assert model.count_params() > 500_000
    best = min(row["val_bits_per_note"] for row in history)
    assert best < config["baseline"]["bits_per_note"], "the small preset must beat the n-gram baseline"
    out = tmp_path / "reference"
    result = compare(REFERENCE, "100,150", CompareSettings(num=1, bars=2), lambda line: None, out)
    assert result.page.exists()
    assert set(result.metrics) == {"epoch 100", "epoch 150", "real continuation"}


def test_demo_trains_compares_and_continues(tmp_path, monkeypatch):
    """The demo's wiring on a handful of chorales: a run, a page, and a second call that resumes."""
    import composer.demo as demo_module

    sources = tmp_path / "midi"
    sources.mkdir()
    for path in sorted(CHORALES.glob("*.mid"))[:10]:
        shutil.copy(path, sources / path.name)
    monkeypatch.setattr(demo_module, "BUNDLED", sources)
    monkeypatch.setattr(demo_module, "REFERENCE", tmp_path / "no-reference")
    out = tmp_path / "demo"
    lines: list[str] = []
    result = demo_module.demo(out, epochs=2, save_at=(1, 2), num=1, bars=1, report=lines.append)
    assert [p.name for p in result.pages] == ["index.html"] and result.pages[0].exists()
    assert sorted(Run(out).saved_epochs()) == [1, 2]
    assert any(line.startswith("epoch 2/2") for line in lines)
    again = demo_module.demo(out, epochs=2, save_at=(1, 2), num=1, bars=1, report=lines.append)
    assert any("already trained 2 epochs" in line for line in lines)
    assert again.pages[0] != result.pages[0]  # a new comparison stamp, the run untouched

"""`composer compare` end to end: a tiny run, its comparison page in a real browser, the shipped reference run."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
from html import escape
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from composer import ComposerError
from composer.cli import app
from composer.compare import OTHER_REAL, REAL, REAL_VS_REAL, CompareSettings, compare, validation_openings
from composer.dataset import TokenCorpus, tokenize_corpus
from composer.metre import bar_quarters
from composer.report import format_value
from composer.runs import Run
from composer.tokens import Vocabulary, encode_notes
from composer.storage import safe_stem
from composer.config import TrainConfig
from composer.train import train_run
from test_report import ALL_MEDIA_READY, MEDIA_STATE, check_media, check_the_view_toggle, chromium_driver, require_chromium

ROOT = Path(__file__).resolve().parents[1]
CHORALES = ROOT / "midi_data" / "bach_chorales"
REFERENCE = ROOT / "outputs" / "bach-small-reference"
QUIET = lambda line: None  # noqa: E731


def run_json(run_dir: Path) -> dict:
    """run.json as written, read here without the code under test."""
    return json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))


def run_vocab(run_dir: Path) -> Vocabulary:
    return Vocabulary.from_dict(run_json(run_dir)["vocabulary"])


def tiny(**changes) -> CompareSettings:
    """A page that takes seconds: 2 shown openings, 4 measured samples of 2 bars per checkpoint."""
    return CompareSettings(**{"num": 2, "samples": 4, "bars": 2, **changes})


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
    train_run(base / "corpus", run, config, "small", overrides, report=QUIET)
    return run


@pytest.fixture(scope="module")
def tiny_page(tiny_run, tmp_path_factory):
    """One page of the tiny run, shared by the tests that only read it: (result, settings, out)."""
    out = tmp_path_factory.mktemp("tiny page") / "page & co"
    settings = tiny(seed=5)
    return compare(tiny_run, "1,2", settings, QUIET, out), settings, out


def cell_files(out: Path, suffix: str) -> list[Path]:
    return sorted(p for p in out.glob(f"*{suffix}") if p.stem not in ("curves", "pitch_classes"))


def no_building_folder(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if ".building" in p.name]


@pytest.mark.tensorflow
def test_compare_writes_every_artifact(tiny_page):
    result, _, out = tiny_page
    assert result.page == out / "index.html" and result.page.exists()
    assert result.epochs == ["epoch 1", "epoch 2"]
    assert no_building_folder(out.parent) and [p.name for p in out.parent.iterdir()] == [out.name]
    # two epochs plus the real continuation, two openings each: MIDI, WAV, piano roll and score per cell
    for suffix in (".mid", ".wav", ".png", ".svg"):
        assert len(cell_files(out, suffix)) == 3 * 2, suffix
    for svg in cell_files(out, ".svg"):
        assert svg.read_text(encoding="utf-8").lstrip().startswith(("<svg", "<?xml")), svg
    assert set(result.written) == {p for p in out.iterdir()}, "written lists exactly the page's files"
    comparison = result.comparison
    assert comparison.checkpoints == ["epoch 1", "epoch 2"] and comparison.samples == 4
    for m in comparison.measures:
        assert list(m.values) == ["epoch 1", "epoch 2", OTHER_REAL], m.key
        assert m.closest in (None, "epoch 1", "epoch 2"), m.key
        assert set(m.far) == {"epoch 1", "epoch 2"} and m.name, m.key
        for mean, low, high in m.values.values():
            assert not math.isfinite(mean) or low - 1e-9 <= mean <= high + 1e-9, m
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["headline"] == result.headline
    assert saved["checkpoints"] == ["epoch 1", "epoch 2"]
    assert [m["key"] for m in saved["measures"]] == [m.key for m in comparison.measures]
    for row in ("epoch 1", "epoch 2"):
        assert math.isfinite(saved["bits"][row]["validation"]) and saved["bits"][row]["validation"] > 0
        assert math.isfinite(saved["bits"][row]["training"])
    with open(out / "metrics.csv", newline="") as f:
        table = list(csv.reader(f))
    assert table[0][:2] == ["measure", f"real ({REAL})"] and table[0][-2:] == ["closest", "far from real"]
    assert [row[0] for row in table[1 : 1 + len(comparison.measures)]] == [m.key for m in comparison.measures]
    assert {row[-2] for row in table[1 : 1 + len(comparison.measures)]} <= {"epoch 1", "epoch 2", "no clear difference"}
    # a classifier row per checkpoint and the real-vs-real sanity row, accuracies in [0, 1]
    told = comparison.distinguishability
    assert set(told) == {"epoch 1", "epoch 2", REAL_VS_REAL}
    assert all(0 <= d.accuracy <= 1 for d in told.values()) and "A classifier tells the samples" in result.headline
    html = result.page.read_text(encoding="utf-8")
    assert f'<p id="headline">{escape(result.headline)}</p>' in html


@pytest.mark.tensorflow
def test_page_bits_are_the_run_history(tiny_run, tiny_page):
    """One source of truth: validation bits on the page are history.csv's, as `composer info` shows."""
    result = tiny_page[0]
    history = {row["epoch"]: row["val_bits_per_note"] for row in Run(tiny_run).history()}
    html = result.page.read_text(encoding="utf-8")
    for epoch in (1, 2):
        assert result.comparison.bits[f"epoch {epoch}"]["validation"] == history[epoch]
        assert f'<th scope="row">epoch {epoch}</th><td>' in html
        row = re.search(rf'<tr><th scope="row">epoch {epoch}</th>(.*?)</tr>', html).group(1)
        # after the classifier, far-from-real and closest-to-real columns
        assert re.findall(r"<td>(.*?)</td>", row)[3] == format_value(history[epoch])


@pytest.mark.tensorflow
def test_every_epoch_continues_the_same_primer(tiny_run, tmp_path):
    """Same primers and seeds for each checkpoint: only the weights differ."""
    from composer.corpus import read_piece

    out = tmp_path / "page"
    compare(tiny_run, "1,2", tiny(seed=1, primer_bars=1), QUIET, out)
    vocab = run_vocab(tiny_run)
    reals = sorted(out.glob("real_*.mid"))
    assert len(reals) == 2
    for real in reals:
        column = real.stem.removeprefix("real_")
        opening = [n for n in read_piece(real).notes if n.start < 4]
        expected = encode_notes(opening, vocab)[:-1]
        for epoch in ("epoch-1", "epoch-2"):
            sample = encode_notes(read_piece(out / f"{epoch}_{column}.mid").notes, vocab)
            assert np.array_equal(sample[: len(expected)], expected), (epoch, column)


def asked_seconds(run_dir: Path, settings: CompareSettings) -> dict[str, float]:
    """Per opening shown: the length its cells must play, primer and asked bars, at its own tempo."""
    config = run_json(run_dir)
    vocab = run_vocab(run_dir)
    folder = next(f for f in (Path(config["data"]["corpus"]), Run(run_dir).corpus_dir) if (f / "corpus.json").exists())
    openings = validation_openings(TokenCorpus.load(folder), settings, vocab)[: settings.num]
    seconds = {}
    for o in openings:
        bar = bar_quarters(o.primer.time_signature or "4/4")
        bpm = o.primer.bpm or float(config["data"].get("median_bpm", 120.0))
        seconds[o.name] = (o.primer.end + settings.bars * bar) * 60.0 / bpm
    return seconds


@pytest.mark.tensorflow
def test_comparison_page_plays_in_headless_chromium(tiny_run, tiny_page, tmp_path):
    """Every sample plays at least as long as asked; every score renders; the view toggle works."""
    require_chromium()
    from selenium.webdriver.support.ui import WebDriverWait

    result, settings, _ = tiny_page
    asked = asked_seconds(tiny_run, settings)
    driver = chromium_driver(tmp_path / "profile")
    try:
        driver.get(result.page.as_uri())
        WebDriverWait(driver, 30, poll_frequency=0.1).until(lambda d: d.execute_script(ALL_MEDIA_READY))
        state = driver.execute_script(MEDIA_STATE)
        check_the_view_toggle(driver, 3 * 2)
    finally:
        driver.quit()
    check_media(state, audio=3 * 2, scores=3 * 2, other_images=3 * 2 + 2)  # rolls plus the two plots
    assert state["columns"] == list(asked)
    for player in state["audio"]:
        column = state["columns"][player["column"] - 1]
        assert player["duration"] >= asked[column] - 0.05, (player, asked[column])
    assert state["epochs"] == 2


@pytest.mark.tensorflow
def test_compare_cli_prints_headline_and_page(tiny_run, tmp_path):
    result = CliRunner().invoke(
        app, ["compare", str(tiny_run), "--epochs", "all", "--num", "1", "--samples", "2", "--bars", "1", "--out", str(tmp_path / "p")]
    )
    assert result.exit_code == 0, result.output
    assert "epoch 1" in result.output and "epoch 2" in result.output
    assert "2 samples per checkpoint" in result.output
    assert f"open {tmp_path / 'p' / 'index.html'}" in result.output
    headline = json.loads((tmp_path / "p" / "metrics.json").read_text())["headline"]
    assert headline in result.output.splitlines()


@pytest.mark.tensorflow
def test_compare_unknown_epoch_lists_available(tiny_run, tmp_path):
    result = CliRunner().invoke(app, ["compare", str(tiny_run), "--epochs", "1,7", "--out", str(tmp_path / "p")])
    assert result.exit_code == 1
    assert "no checkpoint for epoch 7" in result.output and "available: 1, 2" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "p").exists()


@pytest.mark.tensorflow
def test_compare_with_a_primer_file(tiny_run, tmp_path):
    primer = sorted(CHORALES.glob("*.mid"))[-1]
    out = tmp_path / "page"
    result = compare(tiny_run, "2", tiny(primer=primer), QUIET, out)
    assert result.comparison.checkpoints == ["epoch 2"]
    # no real continuation for a primer file: neither a row nor a measured column
    assert all(list(m.values) == ["epoch 2"] for m in result.comparison.measures)
    assert [p.name for p in out.glob("real_*")] == []
    assert [p.name for p in out.glob("epoch-2_*.wav")] == [f"epoch-2_{primer.stem}.wav"]
    assert "real continuation" not in result.page.read_text(encoding="utf-8")


MATHTEXT_NAME = r"a$x^2$b$\bogus{$c"  # valid and invalid mathtext in one file name


@pytest.mark.tensorflow
def test_a_dollar_in_a_primer_name_does_not_crash_compare(tiny_run, tmp_path):
    """Issue 10 item 9: plot titles are literal, so a '$…$' in a file name is just text."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_title(MATHTEXT_NAME)
    with pytest.raises(ValueError):  # the name really is a mathtext error: the test shows something
        fig.savefig(tmp_path / "mathtext.png")
    plt.close(fig)

    primer = tmp_path / f"{MATHTEXT_NAME}.mid"
    shutil.copy(sorted(CHORALES.glob("*.mid"))[0], primer)
    out = tmp_path / "page"
    result = compare(tiny_run, "1,2", tiny(primer=primer, samples=2), QUIET, out)
    html = result.page.read_text(encoding="utf-8")
    assert f'<th scope="col">{escape(MATHTEXT_NAME)}</th>' in html
    for kind in ("mid", "wav", "png", "svg"):
        # file names keep letters, digits, '.', '-', '_' (storage.safe_stem); the page shows the name as it is
        assert sorted(p.name for p in out.glob(f"epoch-*.{kind}")) == [f"epoch-{e}_{safe_stem(MATHTEXT_NAME)}.{kind}" for e in (1, 2)]
    assert f'src="epoch-1_{safe_stem(MATHTEXT_NAME)}.svg"' in html


@pytest.mark.tensorflow
def test_a_failed_comparison_leaves_no_partial_page(tiny_run, tmp_path, monkeypatch):
    """Broken after every sample, roll and score is written: neither --out nor its hidden build folder stays."""
    import composer.report

    calls = []

    def broken(page, directory):
        calls.append(sorted(p.suffix for p in Path(directory).iterdir()))
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(composer.report, "write_page", broken)
    out = tmp_path / "page"
    with pytest.raises(RuntimeError, match="disk on fire"):
        compare(tiny_run, "1,2", tiny(num=1, samples=2), QUIET, out)
    assert calls and {".wav", ".svg", ".png", ".mid"} <= set(calls[0]), "the failure must come after files were written"
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [], [p.name for p in tmp_path.iterdir()]
    # a previous page in --out is never replaced: compare refuses before writing anything
    out.mkdir()
    (out / "index.html").write_text("the previous page")
    with pytest.raises(ComposerError, match="already holds files"):
        compare(tiny_run, "1,2", tiny(num=1, samples=2), QUIET, out)
    assert [p.name for p in out.iterdir()] == ["index.html"] and (out / "index.html").read_text() == "the previous page"
    assert no_building_folder(tmp_path)


@pytest.mark.tensorflow
def test_a_sample_ending_in_a_rest_still_plays_the_asked_length(tiny_run, tmp_path, monkeypatch):
    """A continuation that is all rest (the model may close a span with long time shifts): its
    MIDI lasts the asked span, and so must the audio the page plays."""
    import wave

    import pretty_midi

    import composer.generate
    from composer.tokens import EOS

    def silent(sampler, primers, settings, bars=None, seconds=None, progress=lambda n: None):
        return [np.append(np.asarray(p.tokens), EOS) for p in primers]

    monkeypatch.setattr(composer.generate, "continue_primers", silent)
    settings = tiny(num=1, samples=2)
    out = tmp_path / "page"
    compare(tiny_run, "1,2", settings, QUIET, out)
    (column, asked), = asked_seconds(tiny_run, settings).items()
    for epoch in (1, 2):
        midi = out / f"epoch-{epoch}_{column}.mid"
        assert pretty_midi.PrettyMIDI(str(midi)).get_end_time() == pytest.approx(asked, abs=0.01)
        with wave.open(str(midi.with_suffix(".wav"))) as audio:
            assert audio.getnframes() / audio.getframerate() >= asked - 0.05, midi.name


@pytest.mark.tensorflow
def test_compare_never_deletes_what_it_did_not_write(tiny_run, tmp_path):
    """--out naming a folder of the user's: their files survive (or compare refuses in one line)."""
    out = tmp_path / "my folder"
    out.mkdir()
    (out / "thesis.txt").write_text("years of work")
    with pytest.raises(ComposerError, match="already holds files"):
        compare(tiny_run, "1,2", tiny(samples=2, num=1), QUIET, out)
    assert (out / "thesis.txt").read_text() == "years of work"


@pytest.mark.tensorflow
def test_reference_run_checkpoints_load_and_compare(tmp_path, monkeypatch):
    """The shipped run: each checkpoint loads on its own, is the architecture run.json records, and
    its page takes the validation bits of exactly those epochs from the run's history."""
    from composer.config import ModelConfig
    from composer.model import load_checkpoint

    monkeypatch.chdir(ROOT)  # run.json names its source corpus relative to the repository
    run = Run(REFERENCE)
    config = run_json(REFERENCE)
    vocab = run_vocab(REFERENCE)
    architecture = config["model"]
    assert architecture["vocab_size"] == len(vocab)
    saved = run.saved_epochs()
    assert {100, 150} <= set(saved)
    weights = {}
    for epoch in (100, 150):
        alone = tmp_path / f"alone-{epoch}" / "model.keras"  # nothing of the run beside it
        alone.parent.mkdir()
        shutil.copy(saved[epoch], alone)
        model = load_checkpoint(alone, len(vocab), ModelConfig(**architecture))
        other = ModelConfig(**{**architecture, "units": architecture["units"] // 2})
        with pytest.raises(ComposerError, match=str(alone.name)):
            load_checkpoint(alone, len(vocab), other)  # the run's record is checked, not assumed
        assert model.get_layer("embedding").output_dim == architecture["embedding"]
        lstms = [layer for layer in model.layers if layer.name.startswith("lstm_")]
        assert [type(layer).__name__ for layer in lstms] == ["LSTM"] * architecture["layers"]
        assert [layer.units for layer in lstms] == [architecture["units"]] * architecture["layers"]
        assert model.get_layer("logits").units == architecture["vocab_size"]
        weights[epoch] = model.get_layer("logits").get_weights()[0]
    assert not np.array_equal(weights[100], weights[150]), "two epochs, two different sets of weights"

    out = tmp_path / "reference"
    result = compare(REFERENCE, "100,150", CompareSettings(num=1, samples=2, bars=1, cache=tmp_path / "cache"), QUIET, out)
    # the training bits of each checkpoint, kept for the next page (validation's are history's)
    assert len(list((tmp_path / "cache" / "bits").iterdir())) == 2
    history = {row["epoch"]: row for row in run.history()}
    html = result.page.read_text(encoding="utf-8")
    assert result.comparison.checkpoints == ["epoch 100", "epoch 150"]
    for epoch in (100, 150):
        bits = result.comparison.bits[f"epoch {epoch}"]
        assert bits["validation"] == history[epoch]["val_bits_per_note"]
        row = re.search(rf'<tr><th scope="row">epoch {epoch}</th>(.*?)</tr>', html).group(1)
        # after the classifier, far-from-real and closest-to-real columns
        assert re.findall(r"<td>(.*?)</td>", row)[3] == format_value(history[epoch]["val_bits_per_note"])
        assert math.isfinite(bits["training"]) and bits["training"] > 0
    lower = "epoch 150" if history[150]["val_bits_per_note"] < history[100]["val_bits_per_note"] else "epoch 100"
    gap = abs(history[150]["val_bits_per_note"] - history[100]["val_bits_per_note"])
    assert f"{lower} is {gap:.2f} bits per note lower on validation" in result.headline


@pytest.mark.tensorflow
def test_demo_trains_compares_and_continues(tmp_path, monkeypatch):
    """The demo's wiring on a handful of chorales: a run, a page, and a second call that resumes."""
    import functools

    import composer.demo as demo_module

    sources = tmp_path / "midi"
    sources.mkdir()
    for path in sorted(CHORALES.glob("*.mid"))[:10]:
        shutil.copy(path, sources / path.name)
    monkeypatch.setattr(demo_module, "BUNDLED", sources)
    monkeypatch.setattr(demo_module, "REFERENCE", tmp_path / "no-reference")
    monkeypatch.setattr(demo_module, "CompareSettings", functools.partial(CompareSettings, samples=4))  # quick
    out = tmp_path / "demo"
    lines: list[str] = []
    result = demo_module.demo(out, epochs=2, save_at=(1, 2), num=1, bars=1, report=lines.append)
    assert [p.name for p in result.pages] == ["index.html"] and result.pages[0].exists()
    assert sorted(Run(out).saved_epochs()) == [1, 2]
    assert any(line.startswith("epoch 2/2") for line in lines)
    again = demo_module.demo(out, epochs=2, save_at=(1, 2), num=1, bars=1, report=lines.append)
    assert any("already trained 2 epochs" in line for line in lines)
    assert again.pages[0] != result.pages[0]  # a new comparison stamp, the run untouched


def test_bits_per_note_are_kept_and_a_damaged_entry_is_computed_again(tmp_path):
    """A second page reads a checkpoint's bits per note back (a planted value shows it is read),
    under a key of all they depend on; a damaged entry is computed again and replaced."""
    from composer.compare import cached_bits
    from composer.metrics import bits_per_note
    from composer.model import LSTMStepper, StepperWeights

    rng = np.random.default_rng(0)
    size, width, units = 20, 4, 8

    def normal(*shape):
        return rng.normal(size=shape).astype(np.float32)

    weights = StepperWeights(normal(size, width), [(normal(width, 4 * units), normal(units, 4 * units), normal(4 * units))], (normal(units, size), normal(size)))
    stepper = LSTMStepper(weights)
    pieces = [rng.integers(3, size, n) for n in (12, 30, 7)]
    expected = bits_per_note(stepper.nll(pieces)[0], 20)
    assert cached_bits(None, stepper, pieces, 20) == expected
    assert cached_bits(tmp_path, stepper, pieces, 20) == expected
    (entry,) = (tmp_path / "bits").iterdir()
    entry.write_text(json.dumps({"bits_per_note": 1.25}))
    assert cached_bits(tmp_path, stepper, pieces, 20) == 1.25
    other = LSTMStepper(StepperWeights(weights.embedding * 2, weights.cells, weights.dense))
    for changed in ((stepper, pieces[:2], 20), (stepper, pieces, 21), (other, pieces, 20)):
        assert cached_bits(tmp_path, *changed) != 1.25  # other weights, pieces or notes: another entry
    for damaged in ("{", json.dumps({"bits_per_note": math.nan}), json.dumps({"bits_per_note": "1"}), json.dumps([1])):
        entry.write_text(damaged)
        assert cached_bits(tmp_path, stepper, pieces, 20) == expected
        assert json.loads(entry.read_text()) == {"bits_per_note": expected}


def test_openings_are_drawn_across_collections_and_metres():
    """A validation set of 3 collections (60 reels, 30 jigs in 6/8, 10 waltzes in 3/4): the first
    few openings already come from all three, in proportion, in a seeded order."""
    from composer.dataset import PieceRecord
    from composer.tokens import Note

    vocab = Vocabulary()
    records, tokens = [], []
    for folder, count, signature in (("reels", 60, "4/4"), ("jigs", 30, "6/8"), ("waltzes", 10, "3/4")):
        for i in range(count):
            notes = [Note(60 + (i + k) % 12, k * 0.5, 0.5) for k in range(48)]
            records.append(PieceRecord(f"{folder}/{folder}{i:02d}", "", "", 120.0, signature, "", 48, 0, "validation"))
            tokens.append(encode_notes(notes, vocab))
    corpus = TokenCorpus(vocab, records, tokens)
    settings = CompareSettings(bars=2, primer_bars=1)
    openings = validation_openings(corpus, settings, vocab)
    assert len(openings) == 100
    assert {o.name.split("_")[0] for o in openings[:8]} == {"jigs", "reels", "waltzes"}
    # 32 samples take the first 32 openings: each collection in proportion to its size
    counts = {c: sum(o.name.startswith(c) for o in openings[:32]) for c in ("reels", "jigs", "waltzes")}
    assert counts == {"reels": 19, "jigs": 10, "waltzes": 3}, counts
    assert {o.primer.time_signature for o in openings[:8]} == {"4/4", "6/8", "3/4"}
    other = validation_openings(corpus, CompareSettings(bars=2, primer_bars=1, seed=1), vocab)
    assert [o.name for o in other] != [o.name for o in openings]
    assert [o.name for o in validation_openings(corpus, settings, vocab)] == [o.name for o in openings]


def engraved_key(svg: str) -> tuple[str, ...]:
    """The key signature a verovio SVG draws: the SMuFL glyphs of each staff's keySig group."""
    import xml.etree.ElementTree as ET

    groups = [g for g in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "keySig"]
    href = "{http://www.w3.org/1999/xlink}href"
    return tuple(" ".join(u.get(href)[1:5] for u in g.iter("{http://www.w3.org/2000/svg}use")) for g in groups)


def key_glyphs(key: str) -> str:
    """The accidentals a key signature shows: sharps (SMuFL E262) or flats (E260), one per fifth."""
    from composer.corpus import KEY_NAMES

    tonic, mode = key.split()
    major = (KEY_NAMES.index(tonic) + (3 if mode == "minor" else 0)) % 12
    fifths = (7 * major + 6) % 12 - 6
    return " ".join(["E262"] * fifths if fifths > 0 else ["E260"] * -fifths)


@pytest.mark.tensorflow
def test_every_column_is_engraved_in_its_openings_key(tiny_run, tiny_page):
    """The piece's own key on every row of its column: the primer bar reads the same in each."""
    result, settings, out = tiny_page
    folder = next(f for f in (Path(run_json(tiny_run)["data"]["corpus"]), Run(tiny_run).corpus_dir) if (f / "corpus.json").exists())
    keys = {o.name: o.key for o in validation_openings(TokenCorpus.load(folder), settings, run_vocab(tiny_run))[: settings.num]}
    svgs = cell_files(out, ".svg")
    assert len(svgs) == 3 * len(keys)
    for svg in svgs:
        column = svg.stem.split("_", 1)[1]
        staves = engraved_key(svg.read_text(encoding="utf-8"))
        assert staves and set(staves) == {key_glyphs(keys[column])}, (svg.name, keys[column], staves)

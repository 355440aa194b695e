"""Plots, the comparison page's HTML, and the page as a real headless Chromium loads it."""

from __future__ import annotations

import math
import os
import re
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from composer.report import (
    Cell,
    ComparisonPage,
    MetricRow,
    best_labels,
    curves_png,
    format_value,
    piano_roll_png,
    pitch_class_png,
    render_page,
    write_page,
)
from composer.tokens import Note

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def melody(length: int = 16) -> list[Note]:
    return [Note(60 + (i * 7) % 12, i * 0.5, 0.5) for i in range(length)] + [Note(48, 0.0, 4.0), Note(43, 4.0, 4.0)]


def write_sine_wav(path: Path, frequency: float, seconds: float = 1.0, rate: int = 44_100) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * 32767 * np.sin(2 * np.pi * frequency * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


# ---- plots ---------------------------------------------------------------------------------


def test_piano_roll_is_a_small_png(tmp_path):
    path = piano_roll_png(melody(), tmp_path / "roll.png", title="epoch 100 · primer 1", primer_end=2.0)
    assert path == tmp_path / "roll.png"
    assert png_size(path) == (800, 300)
    assert path.stat().st_size < 100_000
    assert not list(tmp_path.glob(".*.tmp*")), "the temporary file of the atomic write is left behind"


def test_piano_roll_without_notes_or_primer(tmp_path):
    assert png_size(piano_roll_png([], tmp_path / "empty.png")) == (800, 300)


def test_curves_png_reads_csv_strings_and_gaps(tmp_path):
    # history.csv read with the csv module gives strings; an epoch without validation gives ""
    history = [
        {"epoch": str(e), "loss": str(3 / e), "val_loss": "" if e == 2 else str(3.2 / e),
         "val_bits_per_note": str(5 - e / 50), "train_bits_per_note": str(4.8 - e / 50)}
        for e in range(1, 151)
    ]
    path = curves_png(history, [100, 150], tmp_path / "curves.png", baseline_bits=4.06)
    width, height = png_size(path)
    assert width > 0 and height > 0


def test_curves_png_with_only_the_required_keys(tmp_path):
    history = [{"epoch": e, "loss": 1.0 / e, "val_loss": 1.1 / e, "val_bits_per_note": 4.0 - e / 10} for e in range(1, 6)]
    assert png_size(curves_png(history, [5], tmp_path / "c.png"))[0] > 0


def test_pitch_class_png(tmp_path):
    rows = {"epoch 100": np.arange(12.0), "epoch 150": np.ones(12), "real": np.zeros(12)}
    path = pitch_class_png(rows, tmp_path / "pc.png")
    assert png_size(path) == (800, 300)


# ---- page HTML -----------------------------------------------------------------------------


def metric(better, values, key="m"):
    return MetricRow(key=key, description="a measure", better=better, values=values)


def test_best_value_follows_the_direction():
    columns = ["epoch 100", "epoch 150"]
    assert best_labels(metric("lower", {"epoch 100": 3.2, "epoch 150": 3.0}), columns) == {"epoch 150"}
    assert best_labels(metric("higher", {"epoch 100": 0.9, "epoch 150": 0.7}), columns) == {"epoch 100"}
    # NaN never wins, no direction ranks nothing, equal values rank nothing
    assert best_labels(metric("higher", {"epoch 100": math.nan, "epoch 150": 0.7, "x": 0.1}), columns + ["x"]) == {"epoch 150"}
    assert best_labels(metric(None, {"epoch 100": 1.0, "epoch 150": 2.0}), columns) == set()
    assert best_labels(metric("lower", {"epoch 100": 1.0, "epoch 150": 1.0}), columns) == set()
    # a value outside the compared columns (the real continuation) is not ranked
    assert best_labels(metric("lower", {"epoch 100": 3.2, "epoch 150": 3.0, "real": 1.0}), columns) == {"epoch 150"}


def test_metric_row_rejects_an_unknown_direction():
    with pytest.raises(ValueError, match="better"):
        metric("smaller", {})


def test_format_value():
    assert format_value(math.nan) == "–"
    assert format_value(None) == "–"
    assert format_value(3.0312) == "3.031"
    assert format_value(12.0) == "12"
    assert format_value(123456.0) == "123,456"


def simple_page(**changes) -> ComparisonPage:
    page = ComparisonPage(
        title="run",
        settings={"temperature": "1.0"},
        rows=["epoch 100", "epoch 150", "real"],
        columns=["p1"],
        cells={},
        metrics=[
            metric("lower", {"epoch 100": 3.2, "epoch 150": 3.0, "real": 2.5}, key="bits"),
            metric("higher", {"epoch 100": 0.9, "epoch 150": math.nan}, key="overlap"),
            metric(None, {"epoch 100": 10, "epoch 150": 12, "real": 14}, key="range"),
        ],
        metric_columns=["epoch 100", "epoch 150"],
    )
    for name, value in changes.items():
        setattr(page, name, value)
    return page


def metric_cells(html: str, key: str) -> list[str]:
    row = re.search(rf"<tr><th scope=\"row\" title=\"[^\"]*\">{key}<.*?</tr>", html).group(0)
    return re.findall(r"<td[^>]*>.*?</td>", row)


def test_best_cell_is_highlighted_in_the_table():
    html = render_page(simple_page())
    bits = metric_cells(html, "bits")
    assert bits == ['<td>3.2</td>', '<td class="best" title="best">3</td>', '<td class="ref">2.5</td>']
    overlap = metric_cells(html, "overlap")
    assert overlap[:2] == ['<td>0.9</td>', '<td>–</td>'], "one finite value is no contest"
    assert "best" not in "".join(metric_cells(html, "range"))
    summary = re.search(r'<table id="epochs">.*?</table>', html).group(0)
    assert summary.count("<tr>") == 3  # header + one row per compared epoch
    assert "1 of 2" in summary and "0 of 2" in summary


HOSTILE = '<script>alert("x")</script> a&b \'q\''


def test_hostile_names_are_escaped_and_links_quoted(tmp_path):
    file_name = 'a&b <x> "q".mid'
    page = ComparisonPage(
        title=HOSTILE,
        settings={HOSTILE: HOSTILE},
        rows=[HOSTILE, "real"],
        columns=[HOSTILE],
        cells={(HOSTILE, HOSTILE): Cell(audio="my sample #1.wav", image="roll ?1.png", midi=file_name),
               ("real", HOSTILE): Cell(midi="javascript:alert(1)")},
        metrics=[MetricRow(HOSTILE, HOSTILE, "lower", {HOSTILE: 1.0})],
        metric_columns=[HOSTILE],
        plots=[(HOSTILE, "curves & co.png")],
    )
    html = write_page(page, tmp_path).read_text(encoding="utf-8")
    assert html.count("<script") == 1, "only the page's own script, none from the data"
    assert 'alert("x")' not in html and "<x>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; a&amp;b &#x27;q&#x27;" in html
    assert 'href="a%26b%20%3Cx%3E%20%22q%22.mid"' in html
    assert 'src="my%20sample%20%231.wav"' in html
    assert 'src="roll%20%3F1.png"' in html
    assert 'src="curves%20%26%20co.png"' in html
    assert 'href="javascript:' not in html, "a colon is quoted, so no scheme can sneak in"
    attributes = re.findall(r'(?:href|src)="([^"]*)"', html)
    assert attributes and all(re.fullmatch(r"[A-Za-z0-9_.~/%#-]+", a) for a in attributes), attributes


def test_write_page_is_utf8_and_atomic(tmp_path):
    page = simple_page(title="Bärenreiter ♯")
    path = write_page(page, tmp_path / "new" / "folder")
    assert path == tmp_path / "new" / "folder" / "index.html"
    assert "Bärenreiter ♯" in path.read_text(encoding="utf-8")
    assert [p.name for p in path.parent.iterdir()] == ["index.html"]


def test_missing_cells_and_parts_render():
    page = simple_page(columns=["p1", "p2"], cells={("epoch 100", "p1"): Cell(midi="x.mid")})
    html = render_page(page)
    assert html.count('<td class="missing">') == 5
    assert "<audio" not in html and "<img" not in html


# ---- the page in a real browser ------------------------------------------------------------


def build_listening_page(directory: Path) -> tuple[Path, list[str]]:
    """2 epochs + the real continuation × 2 primers, with WAVs, piano rolls and odd file names."""
    epochs = ["epoch 100", "epoch 150"]
    rows = epochs + ["real continuation"]
    columns = ["primer 1", "primer & 2"]
    cells = {}
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            stem = f"{row} – {column} \"{i}{j}\""
            notes = [Note(60 + (k * (i + j + 2)) % 12, k * 0.5, 0.5) for k in range(24)]
            write_sine_wav(directory / f"{stem}.wav", 220.0 * (1 + i + j / 2))
            piano_roll_png(notes, directory / f"{stem}.png", title=f"{row} · {column}", primer_end=4.0)
            cells[(row, column)] = Cell(audio=f"{stem}.wav", image=f"{stem}.png", midi=f"{stem}.mid")
    history = [{"epoch": e, "loss": 3 / e, "val_loss": 3.3 / e, "val_bits_per_note": 5 - e / 60} for e in range(1, 151)]
    curves_png(history, [100, 150], directory / "curves.png", baseline_bits=4.06)
    pitch_class_png({r: np.random.default_rng(i).random(12) for i, r in enumerate(rows)}, directory / "pitch classes.png")
    page = ComparisonPage(
        title="bach-chorales <run> & co",
        settings={"temperature": "1.0", "top-k": "off", "seed": "7", "soundfont": "FluidR3_GM.sf2"},
        rows=rows,
        columns=columns,
        cells=cells,
        metrics=[
            MetricRow("bits per note", "held-out bits per note (lower: the model expects real music better)", "lower",
                      {"epoch 100": 3.31, "epoch 150": 3.03}),
            MetricRow("pitch-class overlap", "overlap with real pieces, 1 = indistinguishable", "higher",
                      {"epoch 100": 0.91, "epoch 150": 0.87}),
            MetricRow("longest copy", "longest run of tokens copied from training pieces", "lower",
                      {"epoch 100": 21, "epoch 150": math.nan}),
            MetricRow("pitch range", "semitones between lowest and highest note", None,
                      {"epoch 100": 26, "epoch 150": 29, "real continuation": 31}),
        ],
        metric_columns=epochs,
        plots=[("Validation bits per note and training loss", "curves.png"), ("Pitch classes", "pitch classes.png")],
    )
    return write_page(page, directory), epochs


def chromium_driver(profile: Path):
    """Headless Chromium with the system's chromedriver; nothing is downloaded (offline)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={profile}", "--window-size=1280,2000",
    ):
        options.add_argument(argument)
    # an explicit driver path makes selenium skip Selenium Manager, which would try the network
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


def require_chromium() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        reason = f"{' and '.join(missing)} missing (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"the browser test must run in CI: {reason}")
        pytest.skip(reason)


ALL_MEDIA_READY = """
return [...document.querySelectorAll('audio')].every(a => a.readyState >= 1 || a.error)
    && [...document.images].every(i => i.complete);
"""

MEDIA_STATE = """
return {
  audio: [...document.querySelectorAll('audio')].map(a => ({
      src: a.currentSrc, ready: a.readyState, duration: a.duration, error: a.error && a.error.code})),
  images: [...document.images].map(i => ({src: i.currentSrc, width: i.naturalWidth})),
  epochs: document.querySelectorAll('#epochs tbody tr').length,
};
"""


def test_page_plays_in_headless_chromium(tmp_path):
    require_chromium()
    from selenium.webdriver.support.ui import WebDriverWait

    site = tmp_path / "compare dir & co"
    site.mkdir()
    page_path, epochs = build_listening_page(site)
    driver = chromium_driver(tmp_path / "profile")
    try:
        driver.get(page_path.as_uri())
        WebDriverWait(driver, 20, poll_frequency=0.1).until(lambda d: d.execute_script(ALL_MEDIA_READY))
        state = driver.execute_script(MEDIA_STATE)
    finally:
        driver.quit()
    assert len(state["audio"]) == 6 and len(state["images"]) == 6 + 2
    for audio in state["audio"]:
        assert audio["error"] is None and audio["duration"] > 0, audio
        assert abs(audio["duration"] - 1.0) < 0.05, audio
    for image in state["images"]:
        assert image["width"] > 0, image
    assert state["epochs"] == len(epochs)

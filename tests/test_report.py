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

import composer.report as report_module
from composer.compare import REAL, Comparison, Measure
from composer.report import (
    Cell,
    ComparisonPage,
    curves_png,
    format_interval,
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


def pixels(path: Path) -> np.ndarray:
    """The decoded RGBA pixels of a PNG."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA"))


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


@pytest.fixture
def figures(monkeypatch) -> list:
    """Every figure the plotting functions save, kept for inspection of what was drawn."""
    saved = []
    original = report_module._save

    def keep(fig, path):
        saved.append(fig)
        return original(fig, path)

    monkeypatch.setattr(report_module, "_save", keep)
    return saved


def drawn_lines(ax) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The labelled lines of an axis: label -> (x, y) as floats."""
    return {
        line.get_label(): (np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float))
        for line in ax.get_lines()
        if not line.get_label().startswith("_")
    }


def vertical_marks(ax, color: str = "#e67e22") -> list[float]:
    """The x positions of the dashed 'compared epoch' lines of an axis."""
    import matplotlib.colors as mcolors

    return sorted(
        float(line.get_xdata()[0]) for line in ax.get_lines() if mcolors.same_color(line.get_color(), color)
    )


# ---- plots ---------------------------------------------------------------------------------


def test_piano_roll_is_a_small_png(tmp_path):
    path = piano_roll_png(melody(), tmp_path / "roll.png", title="epoch 100 · primer 1", primer_end=2.0)
    assert path == tmp_path / "roll.png"
    assert png_size(path) == (800, 300)
    assert path.stat().st_size < 100_000
    assert not list(tmp_path.glob(".*.tmp*")), "the temporary file of the atomic write is left behind"


def test_piano_roll_draws_each_note_where_it_is(tmp_path, figures):
    """The saved pixels: a primer note in grey and a new note in blue at their (time, pitch),
    blue nowhere else, and the primer's shade behind, not over, an empty spot of the primer."""
    import matplotlib.colors as mcolors

    notes = [Note(50, 0.5, 1.0), Note(70, 5.0, 2.0)]
    path = piano_roll_png(notes, tmp_path / "roll.png", primer_end=2.0, pitch_span=(40, 80), end=8.0)
    image = pixels(path)[..., :3].astype(int)
    (ax,) = figures[0].axes
    scale = report_module.DPI / figures[0].dpi  # savefig's dpi over the figure's own

    def at(quarter: float, pitch: float) -> np.ndarray:
        x, y = ax.transData.transform((quarter, pitch)) * scale
        return image[image.shape[0] - 1 - int(round(y)), int(round(x))]

    def rgb(color: str) -> np.ndarray:
        return np.round(np.array(mcolors.to_rgb(color)) * 255).astype(int)

    def near(pixel: np.ndarray, color: str) -> bool:
        return bool(np.abs(pixel - rgb(color)).max() <= 8)

    assert near(at(1.0, 50), report_module.PRIMER_COLOR)  # the middle of the primer's note
    assert near(at(6.0, 70), report_module.NOTE_COLOR)  # the middle of the new note
    assert near(at(1.0, 70), report_module.PRIMER_SHADE)  # no note there, inside the primer
    assert near(at(6.0, 50), "white") and near(at(3.0, 70), "white")  # no note, after the primer
    # every blue pixel lies inside the new note's bar (quarters 5-7, pitch 70 ± 0.4)
    blue = np.argwhere(np.abs(image - rgb(report_module.NOTE_COLOR)).max(axis=-1) <= 8)
    assert len(blue) > 100
    rows, columns = blue[:, 0], blue[:, 1]
    (left, bottom), (right, top) = (ax.transData.transform(corner) * scale for corner in ((5.0, 69.6), (7.0, 70.4)))
    height = image.shape[0] - 1
    assert left - 2 <= columns.min() and columns.max() <= right + 2
    assert height - top - 2 <= rows.min() and rows.max() <= height - bottom + 2


def test_piano_roll_without_notes_or_primer(tmp_path, figures):
    assert png_size(piano_roll_png([], tmp_path / "empty.png")) == (800, 300)
    (ax,) = figures[0].axes
    assert "no notes" in [t.get_text() for t in ax.texts]


def test_piano_roll_axes_follow_pitch_span_and_end(tmp_path, figures):
    """One pitch range and one length for every cell of a page: the axes are the given ones."""
    notes = melody()
    plain = piano_roll_png(notes, tmp_path / "plain.png", primer_end=2.0)
    fixed = piano_roll_png(notes, tmp_path / "fixed.png", primer_end=2.0, pitch_span=(30, 96), end=32.0)
    free_ax, fixed_ax = figures[0].axes[0], figures[1].axes[0]
    assert free_ax.get_xlim() == (0.0, 8.0), "without end: up to the last note"
    assert fixed_ax.get_xlim() == (0.0, 32.0)
    low, high = fixed_ax.get_ylim()
    assert low < 30 and high > 96 and (low + high) / 2 == pytest.approx(63.0)
    free_low, free_high = free_ax.get_ylim()
    assert free_low > 30 and free_high < 96, "without a span the roll fits the notes"
    assert not np.array_equal(pixels(plain), pixels(fixed))
    # the same span and end make two different melodies share their axes exactly
    other = piano_roll_png([Note(40, 0.0, 1.0)], tmp_path / "other.png", pitch_span=(30, 96), end=32.0)
    assert figures[2].axes[0].get_ylim() == fixed_ax.get_ylim() and figures[2].axes[0].get_xlim() == (0.0, 32.0)
    assert png_size(other) == png_size(fixed)


@pytest.mark.parametrize("title", ["a$x^$b", r"bwv$\bogus$ 1", "a$x^2$b"])
def test_piano_roll_titles_are_literal(tmp_path, figures, title):
    """A '$' in a primer's file name is text, not matplotlib mathtext (which fails on some)."""
    piano_roll_png(melody(), tmp_path / "roll.png", title=f"epoch 1 · {title}", primer_end=2.0)
    (ax,) = figures[0].axes
    assert ax.get_title(loc="left") == f"epoch 1 · {title}"
    assert ax._left_title.get_parse_math() is False, "the title must be drawn as literal text"


def test_curves_png_plots_the_history_with_gaps(tmp_path, figures):
    """The history's values are drawn as given; an epoch without validation is a gap, not a zero."""
    history = [
        {"epoch": e, "loss": 3 / e, "val_loss": math.nan if e == 2 else 3.2 / e,
         "val_bits_per_note": 5 - e / 50, "train_bits_per_note": 4.8 - e / 50}
        for e in range(1, 151)
    ]
    path = curves_png(history, [100, 150], tmp_path / "curves.png", baseline_bits=4.06)
    assert png_size(path) == (800, 450)
    bits_ax, loss_ax = figures[0].axes
    bits, losses = drawn_lines(bits_ax), drawn_lines(loss_ax)
    epochs = np.arange(1, 151, dtype=float)
    np.testing.assert_allclose(bits["validation"][0], epochs)
    np.testing.assert_allclose(bits["validation"][1], 5 - epochs / 50)
    np.testing.assert_allclose(bits["training"][1], 4.8 - epochs / 50)
    np.testing.assert_allclose(losses["training"][1], 3 / epochs)
    val_loss = losses["validation"][1]
    assert math.isnan(val_loss[1]), "the missing epoch must be a gap in the line"
    np.testing.assert_allclose(np.delete(val_loss, 1), np.delete(3.2 / epochs, 1))
    baseline = bits["n-gram baseline (4.06)"][1]
    assert set(baseline) == {4.06}
    assert vertical_marks(bits_ax) == [100.0, 150.0] and vertical_marks(loss_ax) == [100.0, 150.0]
    assert [t.get_text() for t in bits_ax.texts] == ["100", "150"]
    # the gap shows in the picture: the same history without it draws other pixels
    filled = [dict(row, val_loss=3.2 / row["epoch"]) for row in history]
    assert not np.array_equal(pixels(path), pixels(curves_png(filled, [100, 150], tmp_path / "filled.png", baseline_bits=4.06)))


def test_curves_png_without_training_bits_or_baseline(tmp_path, figures):
    """The keys every history has; a series that is missing is left out, not drawn as zeros."""
    history = [{"epoch": e, "loss": 1.0 / e, "val_loss": 1.1 / e, "val_bits_per_note": 4.0 - e / 10} for e in range(1, 6)]
    curves_png(history, [5], tmp_path / "c.png")
    bits_ax, loss_ax = figures[0].axes
    assert sorted(drawn_lines(bits_ax)) == ["compared", "validation"]
    np.testing.assert_allclose(drawn_lines(bits_ax)["validation"][1], [3.9, 3.8, 3.7, 3.6, 3.5])
    assert sorted(drawn_lines(loss_ax)) == ["compared", "training", "validation"]
    assert [t.get_text() for t in bits_ax.get_legend().get_texts()] == ["validation", "compared"]
    # with training bits in the history, the bits axis draws them too
    curves_png([dict(row, train_bits_per_note=3.0) for row in history], [5], tmp_path / "full.png")
    assert sorted(drawn_lines(figures[1].axes[0])) == ["compared", "training", "validation"]


def test_pitch_class_png_draws_normalized_shares(tmp_path, figures):
    rows = {"epoch 100": np.arange(12.0), "epoch 150": np.ones(12), "real": np.zeros(12)}
    path = pitch_class_png(rows, tmp_path / "pc.png")
    assert png_size(path) == (800, 300)
    (ax,) = figures[0].axes
    bars = {container.get_label(): [patch.get_height() for patch in container] for container in ax.containers}
    assert list(bars) == ["epoch 100", "epoch 150", "real"]
    np.testing.assert_allclose(bars["epoch 100"], np.arange(12.0) / 66)  # shares of 0 + 1 + … + 11 notes
    np.testing.assert_allclose(bars["epoch 150"], np.full(12, 1 / 12))
    np.testing.assert_allclose(bars["real"], np.zeros(12))  # no notes: no bars, no division by zero
    # grouped side by side within each pitch class, never on top of each other
    lefts = [[patch.get_x() for patch in container] for container in ax.containers]
    assert lefts[0][0] < lefts[1][0] < lefts[2][0] < lefts[0][1]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["C", "C♯", "D", "E♭", "E", "F", "F♯", "G", "A♭", "A", "B♭", "B"]


# ---- page HTML -----------------------------------------------------------------------------

EPOCHS = ["epoch 100", "epoch 150"]


def measure(key, closest, values, reference=0.8):
    """A measure with each row's (mean, low, high); distances follow from the reference."""
    distances = {r: tuple(abs(x - reference) for x in v) for r, v in values.items()}
    return Measure(key, f"what {key} measures", reference, values, distances, closest)


def fixed_comparison(labels=EPOCHS, closest=("epoch 150", None, None)) -> Comparison:
    a, b = labels
    rows = [a, b, REAL]
    measures = [
        measure("chord_tone_rate", closest[0], dict(zip(rows, [(0.52, 0.48, 0.56), (0.74, 0.70, 0.78), (0.80, 0.76, 0.84)]))),
        measure("in_key_rate", closest[1], dict(zip(rows, [(0.85, 0.80, 0.90), (0.86, 0.81, 0.91), (0.90, 0.86, 0.94)])), 0.9),
        # real music nearest by value, but real music never 'wins': only checkpoints compete
        measure("mean_voices", closest[2], dict(zip(rows, [(3.1, 2.9, 3.3), (3.2, 3.0, 3.4), (3.9, 3.8, 4.0)])), 3.9),
    ]
    return Comparison(
        checkpoints=list(labels),
        bits={a: {"validation": 3.949, "training": 3.612}, b: {"validation": 3.478, "training": 3.011}},
        measures=measures,
        copies={a: (1.0, 0.5, 1.5), b: (1.25, 0.75, 2.0), REAL: (0.5, 0.25, 0.75)},
        longest_copy={a: 2.0, b: 3.5, REAL: 1.0},
        samples=32,
        real_is_closest={m.key: True for m in measures},
    )


def simple_page(**changes) -> ComparisonPage:
    page = ComparisonPage(
        title="run",
        headline="epoch 150 is closer to the real music on 1 of 3 measures (2 no clear difference)",
        settings={"temperature": "1.0"},
        rows=EPOCHS + [REAL],
        columns=["p1"],
        cells={},
        comparison=fixed_comparison(),
    )
    for name, value in changes.items():
        setattr(page, name, value)
    return page


def metric_cells(html: str, key: str) -> list[str]:
    """The <td>s of one measure's row: real music's reference, each row of the page, the verdict."""
    row = re.search(rf"<tr><th scope=\"row\" title=\"[^\"]*\">{re.escape(key)}<.*?</tr>", html)
    assert row, f"no row for {key}"
    return re.findall(r"<td[^>]*>.*?</td>", row.group(0))


def test_format_value():
    assert format_value(math.nan) == "–"
    assert format_value(None) == "–"
    assert format_value(3.0312) == "3.03"  # three significant digits
    assert format_value(0.004567) == "0.00457"
    assert format_value(12.0) == "12"
    assert format_value(123456.0) == "123,456"
    assert format_value(math.inf) == "∞" and format_value(-math.inf) == "−∞"


def test_format_interval():
    assert format_interval((0.74, 0.7, 0.78)) == '0.74 <span class="ci">[0.7–0.78]</span>'
    assert format_interval((2.0, math.nan, math.nan)) == "2", "no interval (one sample): the mean alone"


def test_winner_is_highlighted_only_where_a_checkpoint_is_clearly_closest():
    html = render_page(simple_page())
    chord = metric_cells(html, "chord_tone_rate")
    assert len(chord) == 1 + 3 + 1  # reference, two epochs and the real continuation, verdict
    assert chord[0] == "<td>0.8</td>"
    assert 'class="best"' not in chord[1] and 'class="best"' in chord[2] and 'class="best"' not in chord[3]
    assert chord[-1] == '<td class="verdict">epoch 150 closer</td>'
    for key in ("in_key_rate", "mean_voices"):
        cells = metric_cells(html, key)
        assert not any("best" in cell for cell in cells), key
        assert cells[-1] == '<td class="verdict">no clear difference</td>', key
    assert html.count('class="best"') == 1
    # the same table with no winner anywhere highlights nothing
    none = render_page(simple_page(comparison=fixed_comparison(closest=(None, None, None))))
    assert 'class="best"' not in none
    verdicts = re.findall(r'<td class="verdict">(.*?)</td>', none)
    assert verdicts == ["no clear difference"] * 3
    # and a winner named on another measure moves the highlight there
    moved = render_page(simple_page(comparison=fixed_comparison(closest=(None, "epoch 100", None))))
    assert 'class="best"' in metric_cells(moved, "in_key_rate")[1] and moved.count('class="best"') == 1


def test_the_page_says_how_far_from_real_and_how_often_a_classifier_tells_each_checkpoint():
    from composer.compare import REAL_VS_REAL
    from composer.metrics import Distinguishability

    comparison = fixed_comparison()
    chords = comparison.measures[0]
    chords.name, chords.hear = "chords", "clashing sonorities where too low"
    chords.far = {"epoch 100": True, "epoch 150": False}
    comparison.distinguishability = {
        "epoch 100": Distinguishability(0.91, 0.85, 0.96, (32, 30)),
        "epoch 150": Distinguishability(0.72, 0.68, 0.76, (32, 30)),
        REAL_VS_REAL: Distinguishability(0.52, 0.40, 0.63, (30, 30)),
    }
    html = render_page(simple_page(comparison=comparison))
    cells = metric_cells(html, "chords")
    assert '<span class="far"' in cells[1] and "far" not in cells[2], cells  # epoch 100 only
    assert "far from real: epoch 100" in cells[-1] and "clashing sonorities" in html
    summary = re.search(r'<table id="epochs">.*?</table>', html, re.S).group(0)
    assert "91 % [85–96]" in summary and "72 % [68–76]" in summary and "52 % [40–63]" in summary
    assert re.search(r"epoch 100</th><td>91 % \[85–96\]</td><td>1 of 3</td>", summary), summary
    assert "the real continuations of the same openings" in html


def test_intervals_are_shown_for_every_row():
    html = render_page(simple_page())
    chord = metric_cells(html, "chord_tone_rate")
    assert '0.52 <span class="ci">[0.48–0.56]</span>' in chord[1]
    assert '0.74 <span class="ci">[0.7–0.78]</span>' in chord[2]
    assert '0.8 <span class="ci">[0.76–0.84]</span>' in chord[3]
    assert html.count('<span class="ci">') == 3 * 3 + 2  # every measure × row, and each epoch's copying
    head = re.search(r'<table id="metrics"><thead>.*?</thead>', html).group(0)
    assert re.findall(r"<th(?:\s[^>]*)?>([^<]*)", head)[2:] == ["epoch 100", "epoch 150", REAL, "verdict"]
    assert 'title="chord_tone_rate">chord_tone_rate<span class="desc">what chord_tone_rate measures</span>' in html


def test_headline_is_at_the_top_and_the_summary_counts_wins():
    page = simple_page()
    html = render_page(page)
    body = html[html.index("<body>"):]
    top = re.search(r"<header><h1>run</h1><p id=\"headline\">([^<]*)</p>", body)
    assert top and top.group(1) == page.headline
    assert body.index('id="headline"') < body.index("<main>") and body.count(page.headline) == 1
    summary = re.search(r'<table id="epochs">.*?</table>', html).group(0)
    rows = re.findall(r"<tr><th scope=\"row\">(.*?)</th>(.*?)</tr>", summary)
    assert [label for label, _ in rows] == EPOCHS, "one row per compared checkpoint, not the real music"
    cells = {label: re.findall(r"<td>(.*?)</td>", rest) for label, rest in rows}
    # no classifier result in this table: a dash; then far from real, closest, bits
    assert cells["epoch 100"][:5] == ["–", "0 of 3", "0 of 3", "3.95", "3.61"]
    assert cells["epoch 150"][:5] == ["–", "0 of 3", "1 of 3", "3.48", "3.01"]
    assert "(longest 3.5)" in cells["epoch 150"][5]
    # each 'listen' link lands on that checkpoint's row of the grid
    for label, rest in rows:
        target = re.search(r'href="#(row-\d+)"', rest).group(1)
        assert re.search(rf'<tr id="{target}"><th scope="row">{label}</th>', html), label


HOSTILE = '<script>alert("x")</script> a&b \'q\''
ESCAPED = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; a&amp;b &#x27;q&#x27;"


def test_hostile_names_are_escaped_and_links_quoted(tmp_path):
    file_name = 'a&b <x> "q".mid'
    comparison = fixed_comparison(labels=(HOSTILE, "epoch 2"), closest=(HOSTILE, None, None))
    comparison.measures[1] = Measure(HOSTILE, HOSTILE, 1.0, {HOSTILE: (1.0, 0.9, 1.1), "epoch 2": (2.0, 1.9, 2.1), REAL: (1, 1, 1)},
                                     {HOSTILE: (0, 0, 0.1), "epoch 2": (1, 0.9, 1.1), REAL: (0, 0, 0)}, HOSTILE)
    page = ComparisonPage(
        title=HOSTILE,
        headline=HOSTILE,
        settings={HOSTILE: HOSTILE},
        rows=[HOSTILE, "epoch 2", REAL],
        columns=[HOSTILE],
        cells={(HOSTILE, HOSTILE): Cell(audio="my sample #1.wav", image="roll ?1.png", midi=file_name, score='score <1> & "q".svg'),
               (REAL, HOSTILE): Cell(midi="javascript:alert(1)", score="javascript:alert(2).svg")},
        comparison=comparison,
        plots=[(HOSTILE, "curves & co.png")],
    )
    html = write_page(page, tmp_path).read_text(encoding="utf-8")
    assert html.count("<script") == 1, "only the page's own script, none from the data"
    assert 'alert("x")' not in html and "<x>" not in html and "<1>" not in html
    assert html.count(ESCAPED) >= 8  # title, headline, setting, grid, summary, measure key and description, verdict
    assert f'<p id="headline">{ESCAPED}</p>' in html
    assert f'<td class="verdict">{ESCAPED} closer</td>' in html
    assert html.count('class="best"') == 2, "the hostile checkpoint still wins where it is closest"
    assert 'href="a%26b%20%3Cx%3E%20%22q%22.mid"' in html
    assert 'src="my%20sample%20%231.wav"' in html
    assert 'src="roll%20%3F1.png"' in html
    assert '<img class="score" src="score%20%3C1%3E%20%26%20%22q%22.svg"' in html
    assert 'src="curves%20%26%20co.png"' in html
    assert 'href="javascript:' not in html and 'src="javascript:' not in html, "a colon is quoted, so no scheme can sneak in"
    assert 'src="javascript%3Aalert%282%29.svg"' in html
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
    assert '<a href="x.mid" download>MIDI</a>' in html


def test_score_and_roll_toggle_is_in_the_page():
    page = simple_page(cells={("epoch 100", "p1"): Cell(audio="a.wav", image="a.png", score="a.svg")})
    html = render_page(page)
    cell = re.search(r'<tr id="row-0">.*?</tr>', html).group(0)
    # the score first, then the roll, each with its class for the toggle
    assert cell.index('<img class="score" src="a.svg"') < cell.index('<img class="roll" src="a.png"')
    assert re.search(r'<input type="radio" name="view" id="view-score" checked>', html)
    assert re.search(r'<input type="radio" name="view" id="view-roll">', html)
    assert html.index('id="view-roll"') < html.index('<table id="grid">'), "the radios precede the grid they control"


# ---- the page in a real browser ------------------------------------------------------------


def write_svg(path: Path, label: str) -> Path:
    """A small standalone SVG with its own size, as an engraved excerpt is."""
    path.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="700" height="120" viewBox="0 0 700 120">'
        + "".join(f'<line x1="0" x2="700" y1="{20 + 10 * k}" y2="{20 + 10 * k}" stroke="black"/>' for k in range(5))
        + f'<text x="10" y="100">{label}</text></svg>',
        encoding="utf-8",
    )
    return path


SECONDS = {"primer 1": 1.0, "primer & 2": 1.5}  # the asked length of each column's samples


def build_listening_page(directory: Path) -> tuple[Path, list[str]]:
    """2 epochs + the real continuation × 2 primers, with WAVs, scores, piano rolls and odd file names."""
    epochs = ["epoch 100", "epoch 150"]
    rows = epochs + [REAL]
    columns = list(SECONDS)
    cells = {}
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            stem = f"{row} – {column} \"{i}{j}\""
            notes = [Note(60 + (k * (i + j + 2)) % 12, k * 0.5, 0.5) for k in range(24)]
            write_sine_wav(directory / f"{stem}.wav", 220.0 * (1 + i + j / 2), seconds=SECONDS[column])
            piano_roll_png(notes, directory / f"{stem}.png", title=f"{row} · {column}", primer_end=4.0)
            write_svg(directory / f"{stem}.svg", f"{i}{j}")
            cells[(row, column)] = Cell(audio=f"{stem}.wav", image=f"{stem}.png", midi=f"{stem}.mid", score=f"{stem}.svg")
    history = [{"epoch": e, "loss": 3 / e, "val_loss": 3.3 / e, "val_bits_per_note": 5 - e / 60} for e in range(1, 151)]
    curves_png(history, [100, 150], directory / "curves.png", baseline_bits=4.06)
    pitch_class_png({r: np.random.default_rng(i).random(12) for i, r in enumerate(rows)}, directory / "pitch classes.png")
    page = ComparisonPage(
        title="bach-chorales <run> & co",
        headline="epoch 150 is closer to the real music on 1 of 3 measures (2 no clear difference)",
        settings={"temperature": "1.0", "top-k": "off", "seed": "7", "soundfont": "FluidR3_GM.sf2"},
        rows=rows,
        columns=columns,
        cells=cells,
        comparison=fixed_comparison(),
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
      src: a.currentSrc, ready: a.readyState, duration: a.duration, error: a.error && a.error.code,
      column: a.closest('td').cellIndex, row: a.closest('tr').querySelector('th').textContent})),
  images: [...document.images].map(i => ({src: i.currentSrc, width: i.naturalWidth, height: i.naturalHeight,
      kind: i.className})),
  epochs: document.querySelectorAll('#epochs tbody tr:not(.ref)').length,
  columns: [...document.querySelectorAll('#grid thead th')].slice(1).map(th => th.textContent),
};
"""

VIEW_STATE = """
const shown = i => getComputedStyle(i).display !== 'none' && i.getBoundingClientRect().height > 0;
return {
  score: [...document.querySelectorAll('img.score')].map(shown),
  roll: [...document.querySelectorAll('img.roll')].map(shown),
};
"""


def check_the_view_toggle(driver, cells: int) -> None:
    """Scores show first; choosing 'piano roll' hides every score and shows every roll, and back."""
    from selenium.webdriver.common.by import By

    before = driver.execute_script(VIEW_STATE)
    assert before["score"] == [True] * cells and before["roll"] == [False] * cells, before
    driver.find_element(By.CSS_SELECTOR, 'label[for="view-roll"]').click()
    after = driver.execute_script(VIEW_STATE)
    assert after["score"] == [False] * cells and after["roll"] == [True] * cells, after
    driver.find_element(By.CSS_SELECTOR, 'label[for="view-score"]').click()
    assert driver.execute_script(VIEW_STATE) == before


def check_media(state: dict, audio: int, scores: int, other_images: int) -> None:
    """Every audio playable, every image (scores included) decoded with a real size."""
    assert len(state["audio"]) == audio
    for player in state["audio"]:
        assert player["error"] is None and player["ready"] >= 1 and player["duration"] > 0, player
    assert sum(i["kind"] == "score" for i in state["images"]) == scores
    assert len(state["images"]) == scores + other_images
    for image in state["images"]:
        assert image["width"] > 0 and image["height"] > 0, image


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
        check_the_view_toggle(driver, 6)
    finally:
        driver.quit()
    check_media(state, audio=6, scores=6, other_images=6 + 2)
    assert state["columns"] == list(SECONDS)
    for player in state["audio"]:
        asked = SECONDS[state["columns"][player["column"] - 1]]
        assert player["duration"] >= asked - 0.02, player
        assert player["duration"] == pytest.approx(asked, abs=0.05), player
    assert state["epochs"] == len(epochs)


# ---- the page's layout at phone, laptop and desktop widths ---------------------------------

WIDTHS = (400, 800, 1400)
LEGIBLE = 120  # px: the least height of an engraved grand staff (two staves) that reads at a glance
GRAND_STAFF = (1923, 198)  # the viewBox verovio gives 4 bars of a grand staff at the page's settings


def write_engraved_svg(path: Path, size: tuple[int, int] = GRAND_STAFF) -> Path:
    """An excerpt as verovio writes it: a viewBox and no width or height, two staves of five lines."""
    width, height = size
    staves = [height * 0.18, height * 0.58]
    lines = "".join(
        f'<line x1="10" x2="{width - 10}" y1="{top + k * height * 0.06:.1f}" y2="{top + k * height * 0.06:.1f}" stroke="black"/>'
        for top in staves for k in range(5)
    )
    path.write_text(f'<svg viewBox="0 0 {width} {height}" version="1.1" xmlns="http://www.w3.org/2000/svg">{lines}</svg>',
                    encoding="utf-8")
    return path


WIDE_CHECKPOINTS = [f"epoch {e} of bach-chorales-full-dropout-0.4" for e in (25, 50, 100, 150, 200)]
WIDE_PRIMERS = [f"BWV {n} — O Haupt voll Blut und Wunden, soprano & alto & tenor & bass" for n in ("244.62", "151.5", "112.5")]


def build_wide_page(directory: Path) -> Path:
    """The widest page a comparison makes: five long-named checkpoints and real music, thirteen
    measures with long names, three primers with long names; one 4-bar grand staff per cell
    (one short excerpt among them), audio and piano rolls, and the two plots."""
    rows = WIDE_CHECKPOINTS + [REAL]
    write_sine_wav(directory / "a.wav", 330.0, seconds=0.3)
    piano_roll_png(melody(), directory / "roll.png", primer_end=2.0)
    write_engraved_svg(directory / "score.svg")
    write_engraved_svg(directory / "short.svg", (699, 195))  # a short excerpt: two bars
    cells = {
        (row, column): Cell(audio="a.wav", image="roll.png", midi="a.mid", score="short.svg" if (i, j) == (0, 1) else "score.svg")
        for i, row in enumerate(rows) for j, column in enumerate(WIDE_PRIMERS)
    }
    measures = []
    for k in range(13):
        values = {r: (0.5 + 0.01 * i + k, 0.45 + k, 0.55 + 0.02 * i + k) for i, r in enumerate(rows)}
        measures.append(measure(f"longest_run_of_repeated_melodic_intervals_{k}", rows[k % 5] if k % 3 else None, values, k + 0.6))
    comparison = Comparison(
        checkpoints=list(WIDE_CHECKPOINTS),
        bits={r: {"validation": 3.94 - i / 10, "training": 3.61 - i / 10} for i, r in enumerate(WIDE_CHECKPOINTS)},
        measures=measures,
        copies={r: (1.0 + i, 0.5 + i, 1.5 + i) for i, r in enumerate(rows)},
        longest_copy={r: 2.0 + i for i, r in enumerate(rows)},
        samples=32,
        real_is_closest={m.key: False for m in measures},
    )
    curves_png([{"epoch": e, "loss": 3 / e, "val_loss": 3.3 / e, "val_bits_per_note": 5 - e / 60} for e in range(1, 201)],
               [25, 50, 100, 150, 200], directory / "curves.png")
    page = ComparisonPage(
        title="bach-chorales-full-dropout-0.4-learning-rate-0.002-window-256-" * 2,
        headline="epoch 200 of bach-chorales-full-dropout-0.4 is closer to the real music on 5 of 13 measures",
        settings={"primers": ", ".join(WIDE_PRIMERS), "soundfont": "/usr/share/sounds/sf2/FluidR3_GM_with_a_long_name.sf2"},
        rows=rows,
        columns=list(WIDE_PRIMERS),
        cells=cells,
        comparison=comparison,
        plots=[("Validation bits per note and training loss", "curves.png")],
    )
    return write_page(page, directory)


LAYOUT = """
const doc = document.documentElement, box = e => e.getBoundingClientRect();
return {
  inner: window.innerWidth, client: doc.clientWidth, scroll: doc.scrollWidth,
  boxes: [...document.querySelectorAll('.scroll')].map(b => ({
      table: b.querySelector('table') && b.querySelector('table').id, scroll: b.scrollWidth, client: b.clientWidth})),
  scores: [...document.querySelectorAll('img.score')].map(i => ({
      src: i.getAttribute('src'), width: box(i).width, height: box(i).height, left: box(i).left})),
};
"""

OPENED = """
const open = [...document.querySelectorAll('details.score[open]')], doc = document.documentElement;
const rect = e => e.getBoundingClientRect();
return {
  count: open.length,
  image: open.length ? rect(open[0].querySelector('img.score')).toJSON() : null,
  overlay: open.length ? rect(open[0].querySelector('summary')).toJSON() : null,
  client: doc.clientWidth, scroll: doc.scrollWidth,
};
"""


def test_the_page_fits_phone_laptop_and_desktop_widths(tmp_path):
    """No sideways scrolling of the page at 400, 800 and 1400 px, in either view: the wide tables
    scroll inside their own boxes. At 1400 px every score is drawn at least LEGIBLE px tall, a
    4-bar grand staff at its own shape across the content's width; at every width a click opens
    a score over the whole screen's width at a legible height, and a second click closes it."""
    require_chromium()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    site = tmp_path / "wide & long"
    site.mkdir()
    page_path = build_wide_page(site)
    cells = (len(WIDE_CHECKPOINTS) + 1) * len(WIDE_PRIMERS)
    seen, rolls, opened = {}, {}, {}
    driver = chromium_driver(tmp_path / "profile")
    try:
        driver.get(page_path.as_uri())
        WebDriverWait(driver, 20, poll_frequency=0.1).until(lambda d: d.execute_script(ALL_MEDIA_READY))
        for width in WIDTHS:
            driver.set_window_size(width, 900)
            seen[width] = driver.execute_script(LAYOUT)
            driver.find_element(By.CSS_SELECTOR, "img.score").click()
            opened[width] = driver.execute_script(OPENED)
            driver.find_element(By.CSS_SELECTOR, "details.score[open] > summary").click()
            assert driver.execute_script(OPENED)["count"] == 0, f"a second click closes the score at {width} px"
            driver.find_element(By.CSS_SELECTOR, 'label[for="view-roll"]').click()
            rolls[width] = driver.execute_script(LAYOUT)
            driver.find_element(By.CSS_SELECTOR, 'label[for="view-score"]').click()
        check_the_view_toggle(driver, cells)
    finally:
        driver.quit()
    for width in WIDTHS:
        for view, layout in (("score", seen[width]), ("piano roll", rolls[width])):
            assert layout["inner"] == width
            assert layout["scroll"] <= layout["client"], f"the page scrolls sideways at {width} px ({view}): {layout['scroll']}"
        big = opened[width]
        assert big["count"] == 1, width
        assert big["image"]["width"] >= 0.9 * width, (width, big)
        assert big["image"]["height"] >= LEGIBLE, (width, big)
        assert big["overlay"]["left"] == 0 and big["overlay"]["width"] == big["client"], "the open score covers the screen"
        assert big["scroll"] <= big["client"], "the open score scrolls in its own box, not the page"
    # the tables are wider than a phone: they scroll inside their boxes
    phone = {box["table"]: box for box in seen[400]["boxes"]}
    assert phone["metrics"]["scroll"] > phone["metrics"]["client"] and phone["epochs"]["scroll"] > phone["epochs"]["client"]
    desktop = seen[1400]["scores"]
    assert len(desktop) == cells
    assert all(score["height"] >= LEGIBLE for score in desktop), desktop
    grand = [score for score in desktop if score["src"] == "score.svg"]
    shape = GRAND_STAFF[0] / GRAND_STAFF[1]
    for score in grand:
        assert score["width"] / score["height"] == pytest.approx(shape, rel=0.02), score
    assert grand[0]["width"] >= 0.85 * 1400, "a grand staff gets the content's full width"


def test_a_long_title_is_cut_and_keeps_the_plot_in_its_figure(tmp_path):
    import warnings

    from composer.tokens import Note

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when the layout collapses the plot
        path = report_module.piano_roll_png([Note(60, 0, 1)], tmp_path / "roll.png", "x" * 240, primer_end=1.0)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_band_excerpt_is_given_the_height_of_its_staves():
    page = simple_page(columns=["p1", "p2"], cells={("epoch 100", "p1"): Cell(score="band.svg", staves=5), ("epoch 100", "p2"): Cell(score="satb.svg")})
    html = render_page(page)
    assert '<img class="score" style="--staves:5" src="band.svg"' in html
    assert '<img class="score" src="satb.svg"' in html  # a grand staff keeps the page's usual height
    assert "max-height:calc(5rem * var(--staves, 2))" in html
    # the enlarged view sets its own height, which an inline max-height would have overridden
    assert "details.score[open] img.score{" in html and "max-height:calc(100vh - 4rem)" in html

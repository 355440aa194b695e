"""The epoch comparison: plots (PNG) and one static HTML page to listen to checkpoints side by side.

The page is a single ``index.html`` with inline CSS and relative links to the WAV, PNG and MIDI
files next to it, so it opens from ``file://``, survives being zipped and mailed, and needs no
server and no network. Everything that comes from data (titles, run names, labels, settings,
file names) is HTML-escaped, and every link is percent-quoted, so names with ``&``, ``<``,
quotes or spaces neither break the page nor inject markup.

matplotlib is imported inside the plotting functions (with the file-only Agg backend) so that
importing this module, and with it ``composer --help``, stays fast and needs no display.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from pathlib import Path, PurePath
from urllib.parse import quote

import numpy as np

from composer import __version__
from composer.storage import atomic_path
from composer.tokens import INSTRUMENTS, Note, instrument_of

PITCH_CLASSES = ["C", "C♯", "D", "E♭", "E", "F", "F♯", "G", "A♭", "A", "B♭", "B"]
SIZE = (8.0, 3.0)  # inches at DPI: 800 × 300 px, small enough for a grid of many cells
DPI = 100
NOTE_COLOR = "#1f5fa8"
PRIMER_COLOR = "#9a9a9a"
PRIMER_SHADE = "#ececec"
# one colour per instrument (tokens.INSTRUMENTS order, drums last in black), when a piece has
# several; none grey, the primer's colour
INSTRUMENT_COLORS = (
    "#1f5fa8", "#17becf", "#8c564b", "#2ca02c", "#d62728", "#ff7f0e", "#e377c2", "#bcbd22",
    "#9467bd", "#006d5b", "#aec7e8", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#111111",
)


# ---- plots -----------------------------------------------------------------------------------


def _pyplot():
    """pyplot on the Agg backend: renders to files only, works without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    try:
        with atomic_path(Path(path)) as tmp:
            fig.savefig(tmp, dpi=DPI, format="png")
    finally:
        plt.close(fig)  # figures are otherwise kept alive by pyplot and leak across a batch
    return Path(path)


def note_name(pitch: int) -> str:
    """Scientific pitch notation, middle C (MIDI 60) = C4."""
    return f"{PITCH_CLASSES[pitch % 12]}{pitch // 12 - 1}"


TITLE_CHARACTERS = 60  # of a piano roll's title: beside the key at the right of its line
LEGEND_RIGHT = 0.83  # where the plot ends when a legend of instruments stands beside it (its longest name fits)


def piano_roll_png(
    notes: list[Note],
    path: Path,
    title: str = "",
    primer_end: float | None = None,
    pitch_span: tuple[int, int] | None = None,
    end: float | None = None,
) -> Path:
    """A piano roll (quarters on x, pitch on y); the primer is shaded and drawn in grey.
    Notes of several instruments are coloured by instrument (their GM family; drums at their
    key, in black), with a legend beside the plot.

    ``pitch_span`` and ``end`` fix the axes, so the cells of one page compare at a glance.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=SIZE)
    end = end or max([n.start + n.duration for n in notes] + [primer_end or 0.0, 4.0])
    instruments = [instrument_of(n.program, n.drum) for n in notes]
    used = sorted(set(instruments))
    # fixed margins, not a constrained layout: its solver drew every roll twice (the page holds
    # 12 or more, all with the same axes); room for the tick labels, axis label and title line,
    # and on the right for the legend of several instruments
    fig.subplots_adjust(left=0.065, right=0.985 if len(used) < 2 else LEGEND_RIGHT, bottom=0.15, top=0.9)
    if primer_end is not None:
        ax.axvspan(0, primer_end, color=PRIMER_SHADE, zorder=0)
        ax.axvline(primer_end, color=PRIMER_COLOR, linestyle="--", linewidth=1, zorder=1)
        # a key at the right of the title line: inside the plot it would hide notes
        key = "colours: instruments" if len(used) > 1 else "blue: new"
        ax.set_title(f"grey: primer · {key}", loc="right", fontsize=10, color="#666")
    if notes:
        from matplotlib.collections import PolyCollection

        primer = np.array([primer_end is not None and n.start < primer_end for n in notes])
        colours = [INSTRUMENT_COLORS[i] for i in instruments] if len(used) > 1 else [NOTE_COLOR] * len(notes)
        if len(used) > 1:
            from matplotlib.patches import Patch

            ax.legend(
                handles=[Patch(color=INSTRUMENT_COLORS[i], label=INSTRUMENTS[i][0]) for i in used],
                loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
            )
        # one collection of rectangles, not a patch per note (barh): the same picture, 5x faster
        ax.add_collection(PolyCollection(
            [[(n.start, n.pitch - 0.4), (n.start + n.duration, n.pitch - 0.4), (n.start + n.duration, n.pitch + 0.4), (n.start, n.pitch + 0.4)] for n in notes],
            facecolors=np.where(primer, PRIMER_COLOR, colours),
            edgecolors="white",  # a thin gap keeps repeated notes of one pitch apart
            linewidths=0.5,
            zorder=2,
        ))
        low, high = min(n.pitch for n in notes), max(n.pitch for n in notes)
    else:
        ax.text(0.5, 0.5, "no notes", transform=ax.transAxes, ha="center", va="center", color="#999")
        low, high = 60, 72
    if pitch_span is not None:
        low, high = pitch_span
    # at least an octave of headroom keeps a narrow melody from looking like a wide leap
    middle, half = (low + high) / 2, max(6.5, (high - low) / 2 + 1.5)
    ax.set_ylim(middle - half, middle + half)
    octaves = [p for p in range(0, 128, 12) if middle - half <= p <= middle + half]
    ax.set_yticks(octaves, [note_name(p) for p in octaves])
    for c in octaves:
        ax.axhline(c - 0.5, color="#ddd", linewidth=0.6, zorder=1)
    # bar lines (4/4) every one to a few bars, so that about 16 gridlines show at most
    ax.set_xlim(0, end)
    ax.xaxis.set_major_locator(plt.MultipleLocator(4 * math.ceil(end / 64)))
    ax.grid(axis="x", color="#ddd", linewidth=0.6)
    ax.set_axisbelow(True)
    # large type: the page shows these images at about half size, side by side
    ax.set_xlabel("quarter notes", fontsize=10)
    ax.tick_params(labelsize=10)
    if title:
        # literal text: a '$' in a file name must not start matplotlib's mathtext; a long name is
        # cut, or it pushes the plot out of its own figure (the page shows the whole name)
        shown = title if len(title) <= TITLE_CHARACTERS else title[: TITLE_CHARACTERS - 1] + "…"
        ax.set_title(shown, fontsize=12, loc="left", parse_math=False)
    return _save(fig, path)


def _column(history: list[dict], key: str) -> np.ndarray:
    """One history column as floats; missing or empty entries (e.g. from a CSV) become NaN."""
    values = []
    for row in history:
        value = row.get(key)
        values.append(float(value) if value not in (None, "") else math.nan)
    return np.array(values, dtype=float)


def curves_png(history: list[dict], marked_epochs: list[int], path: Path, baseline_bits: float | None = None) -> Path:
    """Validation bits per note (top) and training loss (bottom), with the compared epochs marked."""
    plt = _pyplot()
    fig, (bits_ax, loss_ax) = plt.subplots(2, 1, figsize=(8.0, 4.5), sharex=True, layout="constrained")
    epochs = _column(history, "epoch")
    series = [
        (bits_ax, "val_bits_per_note", "validation", NOTE_COLOR),
        (bits_ax, "train_bits_per_note", "training", PRIMER_COLOR),
        (loss_ax, "loss", "training", PRIMER_COLOR),
        (loss_ax, "val_loss", "validation", NOTE_COLOR),
    ]
    for ax, key, label, color in series:
        values = _column(history, key)
        if np.isfinite(values).any():
            ax.plot(epochs, values, label=label, color=color, linewidth=1.5)
    if baseline_bits is not None and math.isfinite(baseline_bits):
        bits_ax.axhline(baseline_bits, color="#c0392b", linestyle=":", linewidth=1.5,
                        label=f"n-gram baseline ({baseline_bits:.2f})")
    for i, epoch in enumerate(marked_epochs):
        for ax in (bits_ax, loss_ax):
            ax.axvline(epoch, color="#e67e22", linestyle="--", linewidth=1, label="compared" if i == 0 else None)
        # the bare number: close epochs would otherwise overlap their labels
        bits_ax.text(epoch, 1.0, str(epoch), transform=bits_ax.get_xaxis_transform(),
                     ha="center", va="bottom", fontsize=8, color="#e67e22")
    bits_ax.set_ylabel("bits per note", fontsize=9)
    loss_ax.set_ylabel("loss per token", fontsize=9)
    loss_ax.set_xlabel("epoch", fontsize=9)
    for ax in (bits_ax, loss_ax):
        ax.grid(color="#eee")
        ax.tick_params(labelsize=8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper right")
    return _save(fig, path)


def pitch_class_png(rows: dict[str, np.ndarray], path: Path) -> Path:
    """Grouped bars of 12-bin pitch-class histograms, each row normalized to shares of its notes.

    Normalizing makes a few generated samples comparable with many real pieces.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=SIZE, layout="constrained")
    width = 0.8 / max(1, len(rows))
    for i, (label, histogram) in enumerate(rows.items()):
        counts = np.asarray(histogram, dtype=float).reshape(12)
        total = counts.sum()
        shares = counts / total if total > 0 else counts
        ax.bar(np.arange(12) - 0.4 + width * (i + 0.5), shares, width=width, label=label)
    ax.set_xticks(range(12), PITCH_CLASSES)
    ax.set_ylabel("share of notes", fontsize=9)
    ax.set_title("pitch classes", fontsize=10, loc="left")
    ax.grid(axis="y", color="#eee")
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=8)
    if rows:
        ax.legend(fontsize=8)
    return _save(fig, path)


# ---- the page --------------------------------------------------------------------------------


@dataclass
class Cell:
    """One sample in the grid; paths are relative to the page."""

    audio: str | None = None
    image: str | None = None
    midi: str | None = None
    score: str | None = None  # an engraved excerpt (SVG)
    staves: int = 2  # of the excerpt: a band's score is given the height its staves need


@dataclass
class ComparisonPage:
    title: str
    headline: str  # the comparison in one sentence (compare.headline)
    settings: dict[str, str]
    rows: list[str]  # e.g. ["epoch 100", "epoch 150", "real continuation"]
    columns: list[str]  # primer names
    cells: dict[tuple[str, str], Cell]  # (row, column) -> cell
    comparison: object  # compare.Comparison
    plots: list[tuple[str, str]] = field(default_factory=list)  # (caption, relative png path)


def format_value(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def format_interval(value: tuple[float, float, float]) -> str:
    mean, low, high = value
    if not math.isfinite(low):
        return format_value(mean)
    return f"{format_value(mean)} <span class=\"ci\">[{format_value(low)}–{format_value(high)}]</span>"


def _url(path: str) -> str:
    """A relative path as a link: percent-quoted, so ':' cannot start a scheme (javascript:)."""
    return quote(PurePath(path).as_posix())


def _scrolling(html: str) -> str:
    """A box that scrolls sideways by itself, so a wide table never widens the page."""
    return f'<div class="scroll">{html}</div>'


def _header(page: ComparisonPage) -> str:
    settings = "".join(
        f"<div><dt>{escape(str(k))}</dt><dd>{escape(str(v))}</dd></div>" for k, v in page.settings.items()
    )
    return (
        f'<header><h1>{escape(page.title)}</h1><p id="headline">{escape(page.headline)}</p>'
        f'<dl class="settings">{settings}</dl></header>'
    )


def _summary_table(page: ComparisonPage) -> str:
    """One row per checkpoint: how often a classifier tells it from real music, on how many
    measures it is far from real and clearly closest, bits, copying; then real against real."""
    comparison = page.comparison
    total = len(comparison.measures)
    told = comparison.distinguishability
    body = []
    for label in comparison.checkpoints:
        wins = sum(m.closest == label for m in comparison.measures)
        far = sum(bool(m.far.get(label)) for m in comparison.measures)
        bits = comparison.bits.get(label, {})
        listen = f'<a href="#row-{page.rows.index(label)}">listen</a>' if label in page.rows else ""
        body.append(
            f'<tr><th scope="row">{escape(label)}</th><td>{_accuracy(told.get(label))}</td><td>{far} of {total}</td><td>{wins} of {total}</td>'
            f"<td>{format_value(bits.get('validation'))}</td><td>{format_value(bits.get('training'))}</td>"
            f"<td>{format_interval(comparison.copies[label])} (longest {format_value(comparison.longest_copy[label])})</td>"
            f"<td>{listen}</td></tr>"
        )
    for label, result in told.items():
        if label not in comparison.checkpoints:
            body.append(f'<tr class="ref"><th scope="row">{escape(label)}</th><td>{_accuracy(result)}</td>' + "<td></td>" * 6 + "</tr>")
    return (
        '<table id="epochs"><thead><tr><th scope="col">checkpoint</th>'
        '<th scope="col">told from real by a classifier<span class="desc">balanced accuracy, 95 % interval; 50 % = indistinguishable</span></th>'
        '<th scope="col">far from real on</th><th scope="col">clearly closest to real on</th>'
        '<th scope="col">validation bits/note</th><th scope="col">training bits/note (eval mode)</th>'
        '<th scope="col">copied from training, beats (95 % interval)</th><th scope="col">samples</th></tr></thead>'
        f'<tbody>{"".join(body)}</tbody></table>'
    )


def _accuracy(result) -> str:
    if result is None or not math.isfinite(result.accuracy):
        return "–"
    return f"{100 * result.accuracy:.0f} % [{100 * result.low:.0f}–{100 * result.high:.0f}]"


def _metric_table(page: ComparisonPage) -> str:
    comparison = page.comparison
    rows = list(comparison.measures[0].values) if comparison.measures else []
    head = "".join(f'<th scope="col"{" class=ref" if r not in comparison.checkpoints else ""}>{escape(r)}</th>' for r in rows)
    body = []
    for m in comparison.measures:
        hear = f"; off: {m.hear}" if m.hear else ""
        name = (
            f'<th scope="row" title="{escape(m.key)}">{escape(m.name or m.key)}'
            f'<span class="desc">{escape(m.description)}{escape(hear)}</span></th>'
        )
        cells = [f"<td>{format_value(m.reference)}</td>"]
        for r in rows:
            text = format_interval(m.values[r])
            if m.far.get(r):
                text += ' <span class="far" title="clearly farther from real than other real music">far</span>'
            if r == m.closest:
                cells.append(f'<td class="best" title="clearly closest to real">{text}</td>')
            else:
                cells.append(f'<td{" class=ref" if r not in comparison.checkpoints else ""}>{text}</td>')
        far = [r for r in comparison.checkpoints if m.far.get(r)]
        verdict = f"{escape(m.closest)} closer" if m.closest else "no clear difference"
        if far:
            verdict += f"; far from real: {escape(', '.join(far))}"
        body.append(f"<tr>{name}{''.join(cells)}<td class=\"verdict\">{verdict}</td></tr>")
    table = (
        f'<table id="metrics"><thead><tr><th scope="col">measure</th><th scope="col">real music<span class="desc">'
        f'{escape(_reference_words(comparison))}</span></th>{head}<th scope="col">verdict</th></tr></thead>'
        f'<tbody>{"".join(body)}</tbody></table>'
    )
    return (
        _scrolling(table)
        + '<p class="hint">Means over the measured samples with 95 % bootstrap intervals. A checkpoint is closer '
        "to real music on a measure only where the intervals of the distances to it do not overlap; it is "
        "<em>far</em> from real music where its distance interval lies wholly above the training excerpts' "
        "(farther than other real music is).</p>"
    )


def _reference_words(comparison) -> str:
    if comparison.reference == "training excerpts":
        return "training excerpts of the same length"
    return "the real continuations of the same openings"


def _plots(page: ComparisonPage) -> str:
    return "".join(
        f'<figure><img src="{_url(src)}" alt="{escape(caption)}"><figcaption>{escape(caption)}</figcaption></figure>'
        for caption, src in page.plots
    )


def _score(src: str, row: str, column: str, staves: int = 2) -> str:
    """An engraved excerpt at the cell's full width; a click (a tap, Enter) opens it over the page
    at the screen's full width, another closes it: a <details> without script. Over two staves
    (a band) the excerpt may grow taller, 5rem a staff, so its notes keep a grand staff's size."""
    where = escape(f"{row} · {column}")
    height = f' style="--staves:{staves}"' if staves > 2 else ""  # a variable: the enlarged view keeps its own height
    return (
        '<details class="score"><summary title="enlarge the score">'
        f'<img class="score"{height} src="{_url(src)}" alt="{escape(f"score: {row}, {column}")}">'
        f'<span class="zoom">{where} · click to close</span></summary></details>'
    )


def _cell(cell: Cell | None, row: str, column: str) -> str:
    """One sample: its primer's name, the player and the files on one line, then the score and the roll."""
    where = f'<span class="where">{escape(column)}</span>'
    if cell is None:
        return f'<td class="missing">{where}–</td>'
    head = [where]
    if cell.audio:
        head.append(f'<audio controls preload="auto" src="{_url(cell.audio)}"></audio>')
    links = [f'<a href="{_url(p)}" download>{kind}</a>' for kind, p in (("MIDI", cell.midi), ("WAV", cell.audio)) if p]
    if links:
        head.append(f'<span class="files">{"".join(links)}</span>')
    parts = [f'<div class="head">{"".join(head)}</div>']
    if cell.score:
        parts.append(_score(cell.score, row, column, cell.staves))
    if cell.image:
        parts.append(f'<img class="roll" src="{_url(cell.image)}" alt="{escape(f"piano roll: {row}, {column}")}">')
    return f"<td>{''.join(parts)}</td>"


def _grid(page: ComparisonPage) -> str:
    head = "".join(f'<th scope="col">{escape(c)}</th>' for c in page.columns)
    body = []
    for i, row in enumerate(page.rows):
        cells = "".join(_cell(page.cells.get((row, c)), row, c) for c in page.columns)
        body.append(f'<tr id="row-{i}"><th scope="row">{escape(row)}</th>{cells}</tr>')
    # a toggle without script: the radio buttons' state shows scores or piano rolls
    toggle = (
        '<input type="radio" name="view" id="view-score" checked><label for="view-score">score</label>'
        '<input type="radio" name="view" id="view-roll"><label for="view-roll">piano roll</label>'
    )
    # laid out by the CSS, not as a table: each row's heading, then its cells, one to a line in the
    # score view (an excerpt is one long system and needs the width), side by side as piano rolls
    return (
        f'{toggle}<div class="cells"><table id="grid"><thead><tr><th></th>{head}</tr></thead>'
        f'<tbody>{"".join(body)}</tbody></table></div>'
    )


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1280px;margin:0 auto;
 padding:1rem 1.5rem 3rem;color:#222;background:#fff;line-height:1.4}
h1{font-size:1.5rem;margin:0 0 .4rem}
h1,#headline,dd,figcaption{overflow-wrap:anywhere}
h2{font-size:1.1rem;margin:1.8rem 0 .6rem;padding-bottom:.2rem;border-bottom:1px solid #ddd}
dl.settings{display:flex;flex-wrap:wrap;gap:.2rem 1.4rem;margin:0;font-size:.85rem;color:#555}
dl.settings div{display:flex;gap:.35rem;min-width:0}
dt{font-weight:600}
dd{margin:0}
table{border-collapse:collapse}
th,td{padding:.4rem .7rem;border-bottom:1px solid #e6e6e6;text-align:left;vertical-align:top}
thead th{border-bottom:2px solid #ccc}
/* a wide table scrolls in its own box (_scrolling), never the page; one put straight into a
   section scrolls by itself too */
.scroll{overflow-x:auto;max-width:100%}
section>table{display:block;overflow-x:auto;max-width:100%}
#metrics td{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
#metrics tbody th{font-weight:600}
td.best{background:#dcf2e1;font-weight:700}
.far{color:#a33;font-weight:700;font-size:.8em;margin-left:.3em}
#headline{font-size:1.1rem;margin:.3rem 0 .8rem;padding:.6rem .8rem;background:#f4f7fb;border-left:4px solid #1f5fa8}
.ci{color:#888;font-size:.8rem;font-weight:normal}
td.verdict{color:#555;text-align:left!important}
.ref{color:#888}
.desc,.better{display:block;font-size:.78rem;font-weight:normal;color:#777}
.hint{color:#555;font-size:.9rem;margin:.2rem 0 .8rem}
figure{margin:0 0 1.2rem}
figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85rem;color:#555}
#listen label{margin:0 1rem 0 .2rem;font-size:.9rem}
/* the listening grid, laid out as blocks: a row's heading, then its cells; one cell to a line
   in the score view, so that an excerpt (one long system) gets the full width; side by side as
   piano rolls. The column heads are in each cell (.where); the table's own head stays for
   screen readers. */
#grid,#grid tbody{display:block}
#grid thead{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%);white-space:nowrap}
#grid tr{display:grid;grid-template-columns:minmax(0,1fr);column-gap:1.2rem;margin-bottom:1rem}
#view-roll:checked~.cells #grid tr{grid-template-columns:repeat(auto-fill,minmax(min(100%,20rem),1fr))}
#grid tbody th{grid-column:1/-1;padding:.3rem 0;font-size:1.05rem;border-bottom:2px solid #ccc;overflow-wrap:anywhere}
#grid td{display:block;min-width:0;padding:.5rem 0 .8rem}
#grid .head{display:flex;flex-wrap:wrap;align-items:center;gap:.3rem 1rem}
#grid .where{font-weight:600;min-width:0;overflow-wrap:anywhere}
#grid audio{display:block;width:22rem;max-width:100%}
#view-roll:checked~.cells #grid audio{width:100%}
.files a{font-size:.85rem;margin-right:.9rem}
#grid img.roll{display:block;width:100%;height:auto;margin:.3rem 0}
#view-score:checked~.cells img.roll{display:none}
#view-roll:checked~.cells details.score{display:none}
/* a score: the cell's width (a short excerpt no taller than 10rem, so that the excerpts of a
   column share one scale); clicked, the whole screen */
details.score{margin:.4rem 0 0}
details.score>summary{display:block;list-style:none;cursor:zoom-in}
details.score>summary::-webkit-details-marker{display:none}
img.score{display:block;width:100%;height:auto;max-height:calc(5rem * var(--staves, 2));object-fit:contain;object-position:left center;background:#fff}
.zoom{display:none}
details.score[open]>summary{position:fixed;inset:0;z-index:10;box-sizing:border-box;padding:2.8rem 1rem 1rem;
 overflow:auto;overscroll-behavior:contain;background:#fff;cursor:zoom-out}
details.score[open] .zoom{display:block;position:fixed;top:0;left:0;right:0;padding:.6rem 1rem;
 background:#f4f7fb;border-bottom:1px solid #ddd;font-size:.9rem;overflow-wrap:anywhere}
details.score[open] img.score{width:auto;height:auto;min-width:100%;min-height:8rem;max-width:none;max-height:calc(100vh - 4rem)}
@media (max-width:60rem){details.score[open] img.score{min-height:11rem}}
.missing{color:#aaa}
footer{margin-top:2rem;font-size:.8rem;color:#888}
@media (max-width:40rem){body{padding:.6rem .75rem 2rem}th,td{padding:.3rem .45rem}}
"""

# Optional nicety, the page works without it: starting one player pauses the others, so two
# samples never sound at once while comparing. Inline, so the page stays self-contained.
PAUSE_OTHERS = (
    "<script>document.addEventListener('play',function(e){document.querySelectorAll('audio')"
    ".forEach(function(a){if(a!==e.target)a.pause();});},true);</script>"
)


def render_page(page: ComparisonPage) -> str:
    """The page as one HTML string (see write_page)."""
    plots = f'<section id="plots"><h2>Plots</h2>{_plots(page)}</section>' if page.plots else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(page.title)}</title>
<style>{CSS}</style>
</head>
<body>
{_header(page)}
<main>
<section id="summary"><h2>Checkpoints compared</h2>{_scrolling(_summary_table(page))}</section>
<section id="listen"><h2>Listen</h2>
<p class="hint">Under each checkpoint, one sample for each primer, in the same order for every checkpoint.
The primer is grey (in the scores: the primer's last bar, then 4 new bars); the new music is blue in the piano rolls.
Click a score to see it at the full width of the screen, and again to close it.</p>
{_grid(page)}</section>
<section id="measures"><h2>Measures</h2>{_metric_table(page)}</section>
{plots}
</main>
<footer>composer {escape(__version__)} · all files sit next to this page; zip the folder to share it.</footer>
{PAUSE_OTHERS}
</body>
</html>
"""


def write_page(page: ComparisonPage, directory: Path) -> Path:
    """Write ``directory/index.html`` atomically and return its path."""
    path = Path(directory) / "index.html"
    with atomic_path(path) as tmp:
        tmp.write_text(render_page(page), encoding="utf-8")  # the page declares utf-8, whatever the locale
    return path

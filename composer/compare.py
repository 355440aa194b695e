"""Epoch comparison: the same primers and seeds through each checkpoint, heard and measured side by side.

For every compared epoch, N samples continue the same N primers with the same seeds, so the
differences come from the weights alone. By default the primers are the openings of N
validation pieces, and each piece's real continuation is rendered too, as a reference.
Everything lands in ``RUN/compare/<stamp>/``: MIDI, WAV, piano rolls, plots, metrics.json,
metrics.csv and index.html.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np

from composer import ComposerError
from composer.corpus import write_midi
from composer.storage import write_text
from composer.generate import Primer, SampleSettings, bar_quarters, primer_from_file, sample
from composer.runs import Run
from composer.tokens import BOS, Note, Vocabulary, count_notes, decode_tokens, encode_notes

TRAIN_PIECES_FOR_BITS = 64  # training bits per note on a fixed subset: enough to show the gap, quick
REAL = "real continuation"


@dataclass
class CompareSettings:
    num: int = 4
    bars: float = 16
    primer: Path | None = None
    primer_bars: float = 2
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    soundfont: Path | None = None


@dataclass
class Column:
    """One primer: its tokens, tempo and metre, and (from a validation piece) what really followed."""

    name: str
    primer: Primer
    real: list[Note] | None = None


@dataclass
class CompareResult:
    page: Path
    epochs: list[str]
    metrics: dict[str, dict[str, float]]  # row label -> metric -> value
    written: list[Path] = field(default_factory=list)
    synthesizers: set[str] = field(default_factory=set)


def load_run_corpus(run: Run, config: dict, vocab: Vocabulary, report: Callable[[str], None]):
    """The run's tokenized corpus; rebuilt from its source files when only the run was copied."""
    from composer.dataset import TokenCorpus, default_cache_dir, tokenize_corpus

    data = config["data"]
    for candidate in (Path(data["corpus"]), run.corpus_dir):
        if (candidate / "corpus.json").exists():
            corpus = TokenCorpus.load(candidate)
            break
    else:
        source = Path(data.get("source", ""))
        if not source.exists():
            raise ComposerError(f"{run.root}: its corpus {data['corpus']} and source {source} are both missing")
        report(f"re-tokenizing {source} into {run.corpus_dir}")
        tokenize_corpus([source], run.corpus_dir, vocab.config, cache_dir=default_cache_dir())
        corpus = TokenCorpus.load(run.corpus_dir)
    if corpus.vocab != vocab:
        raise ComposerError(f"{run.root}: the corpus vocabulary differs from the run's")
    return corpus


def validation_columns(corpus, settings: CompareSettings, vocab: Vocabulary) -> list[Column]:
    """Openings of the first N validation pieces (by name) that are long enough to continue."""
    chosen = []
    records = sorted(zip(corpus.pieces, corpus.tokens), key=lambda rt: rt[0].name)
    candidates = [(r, t) for r, t in records if r.split == "validation"]
    if not candidates:
        raise ComposerError("the run's corpus has no validation pieces to take primers from; give --primer")

    def length(rt) -> float:
        return max(n.start + n.duration for n in decode_tokens(rt[1], vocab))

    bar_of = {r.name: bar_quarters(r.time_signature) for r, _ in candidates}
    long_enough = [rt for rt in candidates if length(rt) >= (settings.primer_bars + settings.bars) * bar_of[rt[0].name]]
    for record, tokens in (long_enough + [rt for rt in candidates if rt not in long_enough])[: settings.num]:
        bar = bar_of[record.name]
        primer_end = settings.primer_bars * bar
        notes = decode_tokens(tokens, vocab)
        opening = [n for n in notes if n.start < primer_end - 1e-9]
        end = primer_end + settings.bars * bar
        real = [
            Note(n.pitch, n.start, min(n.duration, end - n.start), n.velocity)
            for n in notes
            if n.start < end - 1e-9
        ]
        primer_tokens = encode_notes(opening, vocab)[:-1]
        primer = Primer(record.name.replace("/", "_"), primer_tokens, record.tempo, record.time_signature, primer_end)
        chosen.append(Column(primer.name, primer, real))
    return chosen


def checkpoint_bits(model, corpus, vocab) -> tuple[float, float]:
    """Validation and training bits per note of one checkpoint."""
    from composer.metrics import bits_per_note
    from composer.train import token_nll

    def bits(pieces: list[np.ndarray]) -> float:
        if not pieces:
            return math.nan
        nll, _ = token_nll(model, pieces)
        return bits_per_note(nll, sum(count_notes(p, vocab) for p in pieces))

    return bits(corpus.split("validation")), bits(corpus.split("train")[:TRAIN_PIECES_FOR_BITS])


def stamp(root: Path) -> Path:
    base = datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = root / base, 1
    while path.exists():
        n += 1
        path = root / f"{base}-{n}"
    return path


def compare(
    run_dir: Path,
    epochs: str,
    settings: CompareSettings = CompareSettings(),
    report: Callable[[str], None] = print,
    out: Path | None = None,
) -> CompareResult:
    from composer.audio import render_wav
    from composer.metrics import METRIC_INFO, TrainingIndex, sample_metrics
    from composer.model import LSTMStepper, load_checkpoint
    from composer.report import Cell, ComparisonPage, MetricRow, curves_png, piano_roll_png, pitch_class_png, write_page

    run = Run(run_dir)
    config = run.config()
    vocab = Vocabulary.from_dict(config["vocabulary"])
    checkpoints = run.resolve_many(epochs)
    corpus = load_run_corpus(run, config, vocab, report)
    if settings.primer is not None:
        primer = primer_from_file(settings.primer, settings.primer_bars, vocab)
        columns = [Column(f"{primer.name} #{i + 1}", primer) for i in range(settings.num)]
    else:
        columns = validation_columns(corpus, settings, vocab)
    directory = out or stamp(run.comparisons)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    synthesizers: set[str] = set()
    cells: dict[tuple[str, str], Cell] = {}
    spq = vocab.config.steps_per_quarter

    def add_cell(row: str, column: Column, notes: list[Note], slug: str) -> None:
        bpm = column.primer.bpm or config["data"].get("median_bpm", 120.0)
        signature = column.primer.time_signature or "4/4"
        midi = write_midi(notes, directory / f"{slug}.mid", bpm, 0, signature)
        rendering = render_wav(midi, directory / f"{slug}.wav", settings.soundfont)
        synthesizers.add(rendering.synthesizer)
        image = piano_roll_png(notes, directory / f"{slug}.png", f"{row} · {column.name}", column.primer.end or None)
        written.extend([midi, rendering.path, image])
        cells[(row, column.name)] = Cell(audio=rendering.path.name, image=image.name, midi=midi.name)

    index = TrainingIndex(corpus.split("train"))
    validation = corpus.split("validation")
    numbers = [int(label.split("-")[1]) for label, _ in checkpoints]
    labels = [f"epoch {n}" for n in numbers]
    metrics: dict[str, dict[str, float]] = {}
    histograms: dict[str, np.ndarray] = {}
    for (label, path), row in zip(checkpoints, labels):
        report(f"{row}: sampling {len(columns)} continuations of {settings.bars:g} bars")
        model = load_checkpoint(path, len(vocab))
        stepper = LSTMStepper(model)
        steps = [int(round(settings.bars * bar_quarters(c.primer.time_signature or "4/4") * spq)) for c in columns]
        samples = []
        # columns may differ in metre; sample each length group together
        for length in sorted(set(steps)):
            group = [i for i, s in enumerate(steps) if s == length]
            run_settings = SampleSettings(
                settings.temperature, settings.top_k, settings.top_p, settings.seed, steps=length
            )
            starts = [int(round(columns[i].primer.end * spq)) for i in group]
            result = sample(stepper, vocab, [columns[i].primer.tokens for i in group], run_settings, starts=starts)
            samples.extend(zip(group, result))
        samples = [s for _, s in sorted(samples, key=lambda gs: gs[0])]
        for column, tokens in zip(columns, samples):
            add_cell(row, column, decode_tokens(tokens, vocab), f"{label}_{column.name}")
        continuations = [np.concatenate([[BOS], s[len(c.primer.tokens) :]]) for c, s in zip(columns, samples)]
        val_bits, train_bits = checkpoint_bits(model, corpus, vocab)
        metrics[row] = {"val_bits_per_note": val_bits, "train_bits_per_note": train_bits}
        metrics[row].update(sample_metrics(continuations, vocab, validation, index))
        histograms[row] = mean_pitch_classes(continuations, vocab)
    rows = list(labels)
    if any(c.real for c in columns):
        rows.append(REAL)
        for column in columns:
            if column.real:
                add_cell(REAL, column, column.real, f"real_{column.name}")
        reals = [encode_notes(continuation(c.real, c.primer.end), vocab) for c in columns if c.real]
        metrics[REAL] = sample_metrics(reals, vocab, validation, index)
        histograms["real pieces"] = mean_pitch_classes(validation, vocab)

    baseline = (config.get("baseline") or {}).get("bits_per_note")
    history = run.history()
    plots = [
        ("validation bits per note by epoch; dashed: compared epochs", curves_png(history, numbers, directory / "curves.png", baseline)),
        ("pitch classes: generated against real", pitch_class_png(histograms, directory / "pitch_classes.png")),
    ]
    written.extend(path for _, path in plots)
    info = {
        "val_bits_per_note": ("validation bits per note of the checkpoint (held-out pieces)", "lower"),
        "train_bits_per_note": (f"training bits per note (first {TRAIN_PIECES_FOR_BITS} training pieces); the gap to validation shows overfitting", None),
        **METRIC_INFO,
    }
    keys = list(info)
    metric_rows = [
        MetricRow(key, info[key][0], info[key][1], {row: values[key] for row, values in metrics.items() if key in values})
        for key in keys
    ]
    settings_shown = {
        "run": run.name,
        "epochs": ", ".join(labels),
        "primers": "validation openings" if settings.primer is None else str(settings.primer),
        "primer bars": f"{settings.primer_bars:g}",
        "bars generated": f"{settings.bars:g}",
        "temperature": f"{settings.temperature:g}",
        "top-k": str(settings.top_k),
        "top-p": f"{settings.top_p:g}",
        "seed": str(settings.seed),
        "n-gram baseline": f"{baseline:.3f} bits/note" if baseline else "–",
        "audio": ", ".join(sorted(synthesizers)),
    }
    page = ComparisonPage(
        title=f"{run.name}: {' vs '.join(labels)}",
        settings=settings_shown,
        rows=rows,
        columns=[c.name for c in columns],
        cells=cells,
        metrics=metric_rows,
        metric_columns=labels,
        plots=[(caption, path.name) for caption, path in plots],
    )
    written.append(write_text(directory / "metrics.json", json.dumps({"settings": settings_shown, "metrics": metrics}, indent=1)))
    written.append(write_text(directory / "metrics.csv", metrics_csv(metrics, keys)))
    page_path = write_page(page, directory)
    written.append(page_path)
    return CompareResult(page_path, labels, metrics, written, synthesizers)


def mean_pitch_classes(pieces: list[np.ndarray], vocab: Vocabulary) -> np.ndarray:
    from composer.metrics import piece_statistics

    return np.mean([piece_statistics(decode_tokens(p, vocab)).pitch_class_histogram for p in pieces], axis=0)


def continuation(notes: list[Note], start: float) -> list[Note]:
    """The notes from ``start`` on, moved to begin at 0 (so the primer's span is not a rest)."""
    return [Note(n.pitch, n.start - start, n.duration, n.velocity) for n in notes if n.start >= start]


def metrics_csv(metrics: dict[str, dict[str, float]], keys: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["metric", *metrics])
    for key in keys:
        writer.writerow([key, *(f"{metrics[row].get(key, math.nan):.6g}" for row in metrics)])
    return buffer.getvalue()

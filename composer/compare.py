"""Epoch comparison: the same openings and seeds through each checkpoint, heard and measured side by side.

For every compared epoch, ``samples`` continuations (32 by default) of the openings of held-out
pieces are sampled through the same path as ``composer generate`` (``generate.continue_primers``),
with the same seeds, so differences come from the weights alone. The first ``num`` are shown on
the page with audio; all of them are measured. Each measure is compared with real music: the
mean over excerpts of the training pieces as long as a continuation. A checkpoint is "closer to
real" on a measure only where the 95 % bootstrap intervals of the distances separate; otherwise
the page says "no clear difference". The held-out real continuations are measured the same way,
as a sanity check: real music must be at least as close as any checkpoint.

Everything lands in ``RUN/compare/<stamp>/``: MIDI, WAV, piano rolls, plots, metrics.json,
metrics.csv and index.html. It is built in a hidden folder and renamed when complete, so a
failed comparison leaves no partial page.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np

from composer import ComposerError
from composer.config import CompareSettings, check_option
from composer.storage import building_folder, publish, readable, remove_abandoned, safe_stem
from composer.metrics import Distinguishability
from composer.generate import Primer, bar_quarters, check_settings, continuation, primer_from_file
from composer.metre import bars_end, metre_at
from composer.corpus import estimate_key
from composer.runs import Run
from composer.tokens import Note, Vocabulary, count_notes, decode_tokens, encode_notes, pitched

TRAIN_PIECES_FOR_BITS = 64  # training bits per note on a fixed subset: enough to show the gap, quick
REAL = "real continuation"
# real music made as the real continuations are, from the openings of training pieces: how much
# real music varies around the reference (the sanity row, and the yardstick of "far")
OTHER_REAL = "training continuations"
EXCERPTS = "training excerpts"  # the reference of a --primer comparison, which has no real continuation
REAL_VS_REAL = "training vs held-out real"  # the classifier's sanity row
REFERENCE_EXCERPTS = 240  # training excerpts measured as real music: enough for a steady mean, quick


@dataclass
class Opening:
    """One primer: its tokens, tempo and metre, and (from a validation piece) what really followed."""

    name: str
    primer: Primer
    real: list[Note] | None = None  # from the piece's start to ``end``, cut there
    end: float | None = None  # where the asked span ends, in quarters (validation openings)
    key: str = ""  # engraved on every row of its column: the piece's key, else estimated once


@dataclass
class Measure:
    """One measure across the rows of the page: the mean of each row with its 95 % interval,
    the distance of that mean to real music's with its interval, and the verdicts."""

    key: str
    description: str  # its unit, in words (metrics.MEASURES)
    reference: float  # real music's mean: the openings' real continuations, else training excerpts
    values: dict[str, tuple[float, float, float]]  # row -> (mean, low, high)
    distances: dict[str, tuple[float, float, float]]  # row -> (|mean - reference|, low, high)
    closest: str | None = None  # the checkpoint clearly closest to real; None: no clear difference
    far: dict[str, bool] = field(default_factory=dict)  # checkpoint -> clearly farther than real music varies
    name: str = ""  # in words, for the page
    hear: str = ""  # what a listener hears when it is off


@dataclass
class Comparison:
    """Everything the page and the command report, in numbers (see ``headline``)."""

    checkpoints: list[str]  # row labels, e.g. ["epoch 100", "epoch 150"]
    bits: dict[str, dict[str, float]]  # row -> {"validation": ..., "training": ...}
    measures: list[Measure]
    copies: dict[str, tuple[float, float, float]]  # row -> longest copy in beats: (mean, low, high)
    longest_copy: dict[str, float]  # row -> the longest copy of any sample, beats
    samples: int
    real_is_closest: dict[str, bool]  # measure -> no checkpoint clearly closer to real than other real music
    reference: str = REAL  # what real music's column holds: REAL (the openings' continuations) or EXCERPTS
    # row -> how often a classifier tells its pieces from real ones (metrics.classifier_test);
    # REAL_VS_REAL: training pieces' continuations against the held-out ones, the sanity row
    distinguishability: dict[str, Distinguishability] = field(default_factory=dict)


@dataclass
class CompareResult:
    page: Path
    epochs: list[str]
    comparison: Comparison
    headline: str
    written: list[Path] = field(default_factory=list)
    synthesizers: set[str] = field(default_factory=set)


# ---- openings and reference excerpts ------------------------------------------------------------


def load_run_corpus(run: Run, config: dict, vocab: Vocabulary, report: Callable[[str], None]):
    """The run's tokenized corpus; rebuilt from its source files when only the run was copied."""
    from composer.dataset import TokenCorpus, default_cache_dir, tokenize_corpus

    data = config.data
    for candidate in (Path(data.corpus), run.corpus_dir):
        if (candidate / "corpus.json").exists():
            corpus = TokenCorpus.load(candidate)
            break
    else:
        source = Path(data.source)
        if not data.source or not source.exists():
            raise ComposerError(f"{run.root}: its corpus {data.corpus} and source {source} are both missing")
        report(f"re-tokenizing {source} into {run.corpus_dir}")
        tokenize_corpus([source], run.corpus_dir, vocab.config, cache_dir=default_cache_dir())
        corpus = TokenCorpus.load(run.corpus_dir)
    if corpus.vocab != vocab:
        raise ComposerError(f"{run.root}: the corpus vocabulary differs from the run's")
    found = corpus.content_hash()
    if data.corpus_hash and found != data.corpus_hash:
        # e.g. a run trained before the split rule changed: its pieces fall on other sides now
        report(
            f"warning: the corpus found for {run.root} is not the one it trained on (content hash "
            f"{found[:12]} vs {data.corpus_hash[:12]}); some openings and validation "
            f"pieces may be pieces it trained on"
        )
    return corpus


def validation_openings(corpus, settings: CompareSettings, vocab: Vocabulary, split: str = "validation") -> list[Opening]:
    """Openings of the ``split``'s pieces, in an order fair to the whole split: pieces are grouped
    by metre and by source folder (a collection), shuffled within each group (seeded), and merged
    so that any first few openings hold every group in proportion to its size (stratified).
    Within a group, pieces long enough to continue come first."""
    candidates = [(r, t) for r, t in zip(corpus.pieces, corpus.tokens) if r.split == split]
    if not candidates:
        raise ComposerError(f"the run's corpus has no {split} pieces to take primers from; give --primer")
    strata: dict[tuple[str, str], list[tuple[bool, Opening]]] = {}
    for record, tokens in sorted(candidates, key=lambda rt: rt[0].name):
        # the opening's bars counted across the piece's changes of metre; continued in the one at its end
        primer_end = bars_end(record.metre(), settings.primer_bars)
        signature = metre_at(record.metre(), primer_end)
        end = primer_end + settings.bars * bar_quarters(signature)
        notes = decode_tokens(tokens, vocab)
        opening = [n for n in notes if n.start < primer_end - 1e-9]
        if not opening:
            continue
        primer = Primer(readable(record.name).replace("/", "_"), encode_notes(opening, vocab)[:-1], record.tempo, signature, primer_end)
        long_enough = max(n.start + n.duration for n in notes) >= end - 1e-9
        stratum = (record.time_signature, str(Path(record.name).parent))
        real = continuation(notes, 0.0, end)
        key = record.key or estimate_key(real)
        strata.setdefault(stratum, []).append((not long_enough, Opening(primer.name, primer, real, end, key)))
    rng = np.random.default_rng(settings.seed)
    placed = []
    for number, stratum in enumerate(sorted(strata)):
        members = strata[stratum]
        shuffled = [members[i] for i in rng.permutation(len(members))]
        queue = [o for _, o in sorted(shuffled, key=lambda lo: lo[0])]
        # the k-th of n at (k + 1/2) / n: merged, every prefix holds each group in proportion
        placed += [((k + 0.5) / len(queue), number, o) for k, o in enumerate(queue)]
    return [o for _, _, o in sorted(placed, key=lambda p: p[:2])]


def training_excerpts(corpus, vocab: Vocabulary, quarters: float) -> list[list[Note]]:
    """Consecutive excerpts of ``quarters`` from every training piece, each moved to start at 0:
    real music of the same length as a continuation, to measure against."""
    excerpts = []
    for tokens in corpus.split("train"):
        notes = decode_tokens(tokens, vocab)
        if not notes:
            continue
        length = max(n.start + n.duration for n in notes)
        for k in range(max(1, int(length // quarters))):
            excerpts.append(continuation(notes, k * quarters, (k + 1) * quarters))
    return [e for e in excerpts if e]


# ---- measuring -------------------------------------------------------------------------------------


def measure_piece(notes: list[Note], context: list[Note], ranges) -> dict[str, float]:
    """Every measure (metrics.MEASURES) and classifier feature (metrics.CLASSIFIER_FEATURES) of
    one continuation (``context``: primer and continuation)."""
    from composer.metrics import MEASURES, harmony_features, heard_measures, piece_statistics, score_measures

    notes, context = pitched(notes), pitched(context)  # drums have no pitch: every measure reads the pitched notes
    values = {**heard_measures(notes, context), **score_measures(notes, ranges), **harmony_features(notes)}
    statistics = piece_statistics(notes)
    for key in MEASURES:
        if key not in values:
            values[key] = float(getattr(statistics, key))
    return values


def name_seed(name: str) -> int:
    """A measure's own bootstrap stream, from its name: adding or moving a measure changes no
    other measure's intervals or verdict."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def compare_measures(
    rows: dict[str, list[dict[str, float]]], reference: list[dict[str, float]], checkpoints: list[str], seed: int
) -> list[Measure]:
    """Per measure: each row's mean and distance to the reference mean, with bootstrap intervals,
    the checkpoint whose distance interval lies wholly below every other checkpoint's, and which
    checkpoints are far from real music (``far_from_real``)."""
    from composer.metrics import MEASURES, bootstrap_means, interval

    measures = []
    for key, info in MEASURES.items():
        ref_values = np.array([r[key] for r in reference], dtype=float)
        ref = float(np.mean(ref_values[np.isfinite(ref_values)])) if np.isfinite(ref_values).any() else math.nan
        values, distances = {}, {}
        for row_number, (row, pieces) in enumerate(rows.items()):
            draws = bootstrap_means([p[key] for p in pieces], seed=[seed, name_seed(key), row_number])
            finite = [p[key] for p in pieces if math.isfinite(p[key])]
            mean = float(np.mean(finite)) if finite else math.nan
            values[row] = (mean, *interval(draws))
            distances[row] = (abs(mean - ref), *interval(np.abs(draws - ref)))
        measure = Measure(key, info.unit, ref, values, distances, clearly_closest(distances, checkpoints), name=info.name, hear=info.hear)
        measure.far = {c: far_from_real(measure, c) for c in checkpoints if c in values}
        measures.append(measure)
    return measures


def far_from_real(measure: Measure, row: str) -> bool:
    """Whether a checkpoint is clearly farther from real music than other real music is: its
    distance interval lies wholly above the training continuations' (real pieces vary too). Without
    that row (a --primer comparison), whether real music's mean lies outside its interval."""
    low = measure.distances[row][1]
    if OTHER_REAL in measure.distances:
        return bool(low > measure.distances[OTHER_REAL][2])
    mean, lo, hi = measure.values[row]
    return bool(math.isfinite(mean) and not lo <= measure.reference <= hi)


def clearly_closest(distances: dict[str, tuple[float, float, float]], checkpoints: list[str]) -> str | None:
    """The checkpoint whose distance interval ends below the start of every other's, if any."""
    finite = [c for c in checkpoints if c in distances and all(math.isfinite(x) for x in distances[c])]
    for candidate in finite:
        others = [c for c in finite if c != candidate]
        if others and all(distances[candidate][2] < distances[c][1] for c in others):
            return candidate
    return None


def real_holds(measure: Measure, checkpoints: list[str]) -> bool:
    """The sanity check of a measure: no checkpoint is clearly closer to real music than other
    real music is (the training continuations; its distance interval wholly below theirs)."""
    real = measure.distances[OTHER_REAL]
    return not any(measure.distances[c][2] < real[1] for c in checkpoints if c in measure.distances)


def headline(comparison: Comparison) -> str:
    """The comparison in a few sentences, from the numbers alone (tested on fixed tables): which
    checkpoint is closer to real music, how far each still is from it, how often a classifier
    tells it from real music, bits per note and copying."""
    labels = comparison.checkpoints
    total = len(comparison.measures)
    wins = {label: sum(m.closest == label for m in comparison.measures) for label in labels}
    unclear = sum(m.closest is None for m in comparison.measures)
    copy = max(comparison.longest_copy.get(label, 0.0) for label in labels) if labels else 0.0
    sentences = []
    if len(labels) == 1:
        sentences.append(f"{labels[0]}: {comparison.samples} samples measured")
    else:
        best = max(labels, key=lambda label: (wins[label], -labels.index(label)))
        others = ", ".join(f"{label} on {wins[label]}" for label in labels if label != best and wins[label])
        if wins[best] == 0:
            sentences.append(f"No clear difference between {' and '.join(labels)} on any of {total} measures")
        else:
            sentences.append(
                f"{best} is closer to the real music on {wins[best]} of {total} measures"
                + f" ({unclear} no clear difference" + (f"; {others}" if others else "") + ")"
            )
    sentences += [far_sentence(comparison, label) for label in labels]
    told = distinguishability_sentence(comparison)
    if told:
        sentences.append(told)
    bits = {label: comparison.bits.get(label, {}).get("validation", math.nan) for label in labels}
    finite = {label: b for label, b in bits.items() if math.isfinite(b)}
    tail = f"copies at most {copy:.3g} beats from training"
    if len(finite) >= 2:
        lowest = min(finite, key=finite.get)
        tail = f"{lowest} is {max(finite.values()) - finite[lowest]:.2f} bits per note lower on validation; " + tail
    sentences.append(tail + f" ({comparison.samples} samples per checkpoint, 95 % intervals)")
    return ". ".join(sentences) + "."


def far_sentence(comparison: Comparison, label: str, shown: int = 3) -> str:
    """How far one checkpoint is from real music: on how many measures, and the farthest few
    with their values against real music's."""
    far = [m for m in comparison.measures if m.far.get(label)]
    where = "the openings' real continuations" if comparison.reference == REAL else "real music"
    if not far:
        return f"{label} is within real music's spread on all {len(comparison.measures)} measures"

    def relative(m: Measure) -> float:
        scale = abs(m.reference) if m.reference else 1.0
        return m.distances[label][0] / scale

    worst = sorted(far, key=relative, reverse=True)[:shown]
    details = ", ".join(f"{m.name or m.key} {short(m.values[label][0])} vs {short(m.reference)}" for m in worst)
    return f"{label} is far from {where} on {len(far)} of {len(comparison.measures)} measures ({details})"


def short(value: float) -> str:
    """Two significant digits, as a sentence wants them: 2.0, 0.29, 0.0058, 34."""
    text = f"{value:.2g}"
    return f"{value:.1f}" if "." not in text and "e" not in text and abs(value) < 10 else text


def distinguishability_sentence(comparison: Comparison) -> str:
    found = {k: d for k, d in comparison.distinguishability.items() if math.isfinite(d.accuracy)}
    parts = [
        f"{label} {percent(found[label])}" for label in comparison.checkpoints if label in found
    ]
    if not parts:
        return ""
    sentence = "A classifier tells the samples from real continuations " + ", ".join(parts) + " of the time (50 % = indistinguishable"
    if REAL_VS_REAL in found:
        sentence += f"; real from real: {percent(found[REAL_VS_REAL])}"
    return sentence + ")"


def percent(d) -> str:
    return f"{100 * d.accuracy:.0f} % [{100 * d.low:.0f}–{100 * d.high:.0f}]"


# ---- the comparison --------------------------------------------------------------------------------


def checkpoint_bits(run: Run, epoch: int, stepper, corpus, vocab, validation_notes: int) -> dict[str, float]:
    """Validation bits per note as the run's history recorded it (one source of truth, as
    ``composer info``), else computed the way training computes it; training bits on a subset
    (both with the NumPy stepper, ``LSTMStepper.nll``)."""
    from composer.metrics import bits_per_note

    recorded = {row["epoch"]: row["val_bits_per_note"] for row in run.history()}
    validation = corpus.split("validation")
    if epoch in recorded and math.isfinite(recorded[epoch]):
        val = recorded[epoch]
    elif validation:
        val = bits_per_note(stepper.nll(validation)[0], validation_notes)
    else:
        val = math.nan
    train = corpus.split("train")[:TRAIN_PIECES_FOR_BITS]
    training = bits_per_note(stepper.nll(train)[0], sum(count_notes(p, vocab) for p in train)) if train else math.nan
    return {"validation": val, "training": training}


def stamp(root: Path) -> Path:
    """A new page folder named by the time, claimed (made empty) by this process alone: two
    comparisons started in the same second get ``STAMP`` and ``STAMP-2``."""
    from composer.storage import claim_folder

    return claim_folder(root, datetime.now().strftime("%Y%m%d-%H%M%S"))


def check_compare_options(settings: CompareSettings) -> None:
    lifted = settings.no_ceiling
    check_option("--samples", settings.samples, 1, 100_000, ceiling=1000, lifted=lifted)
    check_option("--num", settings.num, 1, settings.samples)
    check_option("--bars", settings.bars, 0.25, 10_000, ceiling=256, lifted=lifted)
    check_option("--primer-bars", settings.primer_bars, 0.25, 1000)


def compare(
    run_dir: Path,
    epochs: str,
    settings: CompareSettings = CompareSettings(),
    report: Callable[[str], None] = print,
    out: Path | None = None,
) -> CompareResult:
    run = Run(run_dir)
    config = run.config()
    vocab = config.vocab()
    sample_settings = settings.sampling()
    check_settings(sample_settings)
    check_compare_options(settings)
    checkpoints = run.resolve_many(epochs)
    run = run.pinned(checkpoints)  # every later look-up of these epochs gives these very files
    if out is not None and out.exists() and not out.is_dir():
        raise ComposerError(f"{out}: is a file, not a folder; choose another --out")
    if out is not None and out.exists() and any(out.iterdir()):
        raise ComposerError(f"{out}: already holds files; choose a new or empty --out (nothing there is replaced)")
    corpus = load_run_corpus(run, config, vocab, report)
    for folder in [run.comparisons] + ([out.parent] if out is not None else []):
        remove_abandoned(folder)  # what compares killed mid-build left (kill -9, power loss)
    # the page's folder is claimed first, then built in a folder of this process's own and
    # renamed onto the claim at the end: concurrent comparisons never share a folder, and a
    # failure leaves no half-written page
    claimed = out is None or not out.exists()
    directory = stamp(run.comparisons) if out is None else out
    directory.mkdir(parents=True, exist_ok=True)
    building = building_folder(directory)
    try:
        result = _compare(run, config, vocab, corpus, checkpoints, settings, sample_settings, building, report)
        publish(building, directory)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        if claimed:
            try:
                directory.rmdir()  # the empty claim; never what another process published there
            except OSError:
                pass
        raise
    result.page = directory / result.page.name
    result.written = [directory / p.relative_to(building) for p in result.written]
    return result


def _compare(run, config, vocab, corpus, checkpoints, settings, sample_settings, directory, report) -> CompareResult:
    from composer.audio import render_wav
    from composer.corpus import write_midi
    from composer.dataset import corpus_voice_ceiling
    from composer.generate import continue_primers, load_sampler, span_end
    from composer.metrics import TrainingIndex, bootstrap_means, classifier_test, copy_beats, feature_matrix, interval
    from composer.report import Cell, ComparisonPage, curves_png, piano_roll_png, pitch_class_png, write_page
    from composer.score import excerpt_window, render_excerpt_svg, voice_ranges
    from composer.storage import write_text

    if settings.primer is not None:
        primer = primer_from_file(settings.primer, settings.primer_bars, vocab)
        openings = [Opening(readable(primer.name), primer, key=estimate_key(decode_tokens(primer.tokens, vocab)))]
    else:
        openings = validation_openings(corpus, settings, vocab)
    count = max(settings.samples, settings.num)
    # sample i continues opening i mod n: with fewer openings than samples, each is continued
    # several times, by different generators
    chosen = [openings[i % len(openings)] for i in range(count)]
    shown = chosen[: min(settings.num, len(openings))]
    ceiling = int(config.data.max_voices or corpus_voice_ceiling(corpus))
    written: list[Path] = []
    synthesizers: set[str] = set()
    cells: dict[tuple[str, str], Cell] = {}
    index = TrainingIndex(corpus.split("train"))
    ranges = voice_ranges([decode_tokens(t, vocab) for t in corpus.split("train")[:80]])
    validation_notes = int(config.data.validation_notes or sum(p.notes for p in corpus.records("validation")))
    numbers = [int(label.split("-")[1]) for label, _ in checkpoints]
    labels = [f"epoch {n}" for n in numbers]
    # one pitch range for every piano roll, so cells compare at a glance
    all_notes: list[list[Note]] = []

    def span_of(opening: Opening, sampler) -> float:
        return span_end(opening.primer, sampler, settings.bars, None)

    rows: dict[str, list[dict[str, float]]] = {}
    copies: dict[str, list[float]] = {}
    shown_notes: dict[tuple[str, str], tuple[list[Note], Opening, float]] = {}
    bits: dict[str, dict[str, float]] = {}
    histograms: dict[str, np.ndarray] = {}
    for (label, _), row, number in zip(checkpoints, labels, numbers):
        report(f"{row}: sampling {count} continuations of {settings.bars:g} bars ({len(shown)} shown)")
        sampler = load_sampler(run, str(number))
        samples = continue_primers(sampler, [o.primer for o in chosen], sample_settings, bars=settings.bars)
        rows[row], copies[row] = [], []
        continuations = []
        for i, (opening, tokens) in enumerate(zip(chosen, samples)):
            end = span_of(opening, sampler)
            heard = continuation(decode_tokens(tokens, vocab), 0.0, end)
            new = continuation(heard, opening.primer.end)
            rows[row].append(measure_piece(new, heard, ranges))
            copies[row].append(copy_beats(tokens[len(opening.primer.tokens) : -1], vocab, index))
            continuations.append(new)
            if i < len(shown):
                shown_notes[(row, opening.name)] = (heard, opening, end)
                all_notes.append(heard)
        bits[row] = checkpoint_bits(run, number, sampler.stepper, corpus, vocab, validation_notes)
        histograms[row] = mean_pitch_classes(continuations)
    unique = list(dict.fromkeys(o.name for o in chosen))
    by_name = {o.name: o for o in openings}
    # real music that continues openings as the samples do (OTHER_REAL): the sanity row and the
    # yardstick of "far", the classifier's real side for a --primer comparison, and the training
    # half of its real-vs-real row
    training_real = [
        measure_piece(continuation(o.real, o.primer.end), o.real, ranges)
        for o in validation_openings(corpus, settings, vocab, "train")[:TRAIN_PIECES_FOR_BITS]
    ] if corpus.split("train") else []
    if settings.primer is None:
        # the real continuations are cut where the samples' spans end (validation_openings)
        real_of = {n: measure_piece(continuation(by_name[n].real, by_name[n].primer.end), by_name[n].real, ranges) for n in unique}
        for opening in shown:
            shown_notes[(REAL, opening.name)] = (opening.real, opening, opening.end)
            all_notes.append(opening.real)
        copies[REAL] = [
            copy_beats(encode_notes(continuation(by_name[n].real, by_name[n].primer.end), vocab)[1:-1], vocab, index) for n in unique
        ]
        histograms["real pieces"] = mean_pitch_classes([decode_tokens(t, vocab) for t in corpus.split("validation")])
        # weighted as the samples are: opening i mod n continued once per sample
        reference = [real_of[o.name] for o in chosen]
        if training_real:
            rows[OTHER_REAL] = training_real
        real_side, real_groups = [real_of[n] for n in unique], unique
    else:
        excerpts = training_excerpts(corpus, vocab, settings.bars * bar_quarters(openings[0].primer.time_signature or "4/4"))
        reference = [measure_piece(e, e, ranges) for e in excerpts[:: max(1, len(excerpts) // REFERENCE_EXCERPTS)]]
        real_side, real_groups = training_real, [f"train {i}" for i in range(len(training_real))]
    measures = compare_measures(rows, reference, labels, settings.seed)
    told = {
        row: classifier_test(feature_matrix(rows[row]), feature_matrix(real_side), [o.name for o in chosen], real_groups, settings.seed)
        for row in labels
    }
    if settings.primer is None and training_real:
        told[REAL_VS_REAL] = classifier_test(
            feature_matrix(training_real), feature_matrix(real_side), [f"train {i}" for i in range(len(training_real))], real_groups, settings.seed
        )
    copy_intervals = {}
    for number, (row, values) in enumerate(copies.items()):
        copy_intervals[row] = (float(np.mean(values)), *interval(bootstrap_means(values, seed=settings.seed + number)))
    comparison = Comparison(
        checkpoints=labels,
        bits=bits,
        measures=measures,
        copies=copy_intervals,
        longest_copy={row: float(max(values)) for row, values in copies.items()},
        samples=count,
        real_is_closest={m.key: real_holds(m, labels) for m in measures if OTHER_REAL in m.distances},
        reference=REAL if settings.primer is None else EXCERPTS,
        distinguishability=told,
    )
    summary = headline(comparison)
    report(summary)

    pitches = [n.pitch for notes in all_notes for n in notes]
    pitch_span = (min(pitches), max(pitches)) if pitches else None
    for (row, name), (notes, opening, end) in shown_notes.items():
        slug = f"{'real' if row == REAL else row.replace(' ', '-')}_{safe_stem(name)}"
        bpm = opening.primer.bpm or float(config.data.median_bpm)
        signature = opening.primer.time_signature or "4/4"
        midi = write_midi(notes, directory / f"{slug}.mid", bpm, None, signature, end)  # each note's instrument
        rendering = render_wav(midi, directory / f"{slug}.wav", settings.soundfont)
        synthesizers.add(rendering.synthesizer)
        image = piano_roll_png(notes, directory / f"{slug}.png", f"{row} · {name}", opening.primer.end or None, pitch_span, end)
        start, stop = excerpt_window(opening.primer.end, signature)
        # one key per column: every row engraved in the opening's key, so the primer reads the same
        score = render_excerpt_svg(notes, directory / f"{slug}.svg", start, stop, opening.primer.end or None, opening.key or None, signature, bpm)
        written.extend([midi, rendering.path, image, score])
        cells[(row, name)] = Cell(audio=rendering.path.name, image=image.name, midi=midi.name, score=score.name)

    baseline = (config.baseline or {}).get("bits_per_note")
    plots = [
        ("validation bits per note by epoch; dashed: compared epochs", curves_png(run.history(), numbers, directory / "curves.png", baseline)),
        ("pitch classes: generated against real", pitch_class_png(histograms, directory / "pitch_classes.png")),
    ]
    written.extend(path for _, path in plots)
    plural = "s" if count != 1 else ""
    settings_shown = {
        "run": readable(run.name),
        "epochs": ", ".join(labels),
        "primers": "validation openings" if settings.primer is None else readable(str(settings.primer)),
        "primer bars": f"{settings.primer_bars:g}",
        "bars generated": f"{settings.bars:g}",
        "measured": f"{count} sample{plural} per checkpoint ({len(shown)} shown)",
        "temperature": f"{settings.temperature:g}",
        "top-k": str(settings.top_k),
        "top-p": f"{settings.top_p:g}",
        "voice ceiling": str(settings.max_voices if settings.max_voices is not None else ceiling),
        "seed": str(settings.seed),
        "n-gram baseline": f"{baseline:.3f} bits/note" if baseline else "–",
        "audio": ", ".join(sorted(synthesizers)),
    }
    page = ComparisonPage(
        title=f"{readable(run.name)}: {' vs '.join(labels)}",
        headline=summary,
        settings=settings_shown,
        rows=labels + ([REAL] if settings.primer is None else []),
        columns=[o.name for o in shown],
        cells=cells,
        comparison=comparison,
        plots=[(caption, path.name) for caption, path in plots],
    )
    written.append(write_text(directory / "metrics.json", json.dumps({"settings": settings_shown, "headline": summary, **comparison_dict(comparison)}, indent=1)))
    written.append(write_text(directory / "metrics.csv", metrics_csv(comparison)))
    page_path = write_page(page, directory)
    written.append(page_path)
    return CompareResult(page_path, labels, comparison, summary, written, synthesizers)


def mean_pitch_classes(pieces: list[list[Note]]) -> np.ndarray:
    from composer.metrics import piece_statistics

    used = [piece_statistics(p).pitch_class_histogram for p in pieces if p]
    return np.mean(used, axis=0) if used else np.zeros(12)


def comparison_dict(comparison: Comparison) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(comparison), default=float))


def metrics_csv(comparison: Comparison) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    rows = list(comparison.measures[0].values) if comparison.measures else comparison.checkpoints
    writer.writerow(["measure", f"real ({comparison.reference})", *(f"{r} {part}" for r in rows for part in ("mean", "low", "high")), "closest", "far from real"])
    for m in comparison.measures:
        cells = [f"{x:.6g}" for r in rows for x in m.values.get(r, (math.nan,) * 3)]
        far = " ".join(r.replace(" ", "-") for r, is_far in m.far.items() if is_far)
        writer.writerow([m.key, f"{m.reference:.6g}", *cells, m.closest or "no clear difference", far or "none"])
    for row, bits in comparison.bits.items():
        writer.writerow([f"bits per note ({row})", "", f"validation {bits['validation']:.6g}", f"training {bits['training']:.6g}"])
    for row, d in comparison.distinguishability.items():
        writer.writerow([f"classifier accuracy ({row})", "", f"{d.accuracy:.6g}", f"{d.low:.6g}", f"{d.high:.6g}"])
    return buffer.getvalue()

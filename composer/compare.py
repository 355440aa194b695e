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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

# modules rather than names where tests and benchmarks replace a function in its module
import composer.corpus
from composer import ComposerError, __version__, audio, generate, metrics, score
from composer import report as pages
from composer.config import CompareSettings, check_option, default_cache_dir
from composer.corpus import estimate_key
from composer.dataset import TokenCorpus, corpus_voice_ceiling, tokenize_corpus
from composer.generate import Primer, check_settings, continuation, primer_from_file
from composer.metrics import Distinguishability, TrainingIndex, bits_per_note, bootstrap_means, copy_beats, feature_matrix, interval
from composer.metre import bar_quarters, bars_end, metre_at
from composer.runs import Run
from composer.storage import building_folder, claim_folder, publish, readable, remove_abandoned, safe_stem, write_text
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


def validation_openings(
    corpus, settings: CompareSettings, vocab: Vocabulary, split: str = "validation", limit: int | None = None
) -> list[Opening]:
    """Openings of the ``split``'s pieces, in an order fair to the whole split: pieces are grouped
    by metre and by source folder (a collection), shuffled within each group (seeded), and merged
    so that any first few openings hold every group in proportion to its size (stratified).
    Within a group, pieces long enough to continue come first. Only the first ``limit`` are
    made into openings (primer tokens, real continuation, key): the order needs none of them."""
    candidates = [(r, t) for r, t in zip(corpus.pieces, corpus.tokens) if r.split == split]
    if not candidates:
        raise ComposerError(f"the run's corpus has no {split} pieces to take primers from; give --primer")
    strata: dict[tuple[str, str], list[tuple[bool, tuple]]] = {}
    for record, tokens in sorted(candidates, key=lambda rt: rt[0].name):
        primer_end, signature, end = opening_span(record, settings)
        notes = decode_tokens(tokens, vocab)
        if not any(n.start < primer_end - 1e-9 for n in notes):
            continue
        long_enough = max(n.start + n.duration for n in notes) >= end - 1e-9
        stratum = (record.time_signature, str(Path(record.name).parent))
        strata.setdefault(stratum, []).append((not long_enough, (record, notes)))
    rng = np.random.default_rng(settings.seed)
    placed = []
    for number, stratum in enumerate(sorted(strata)):
        members = strata[stratum]
        shuffled = [members[i] for i in rng.permutation(len(members))]
        queue = [o for _, o in sorted(shuffled, key=lambda lo: lo[0])]
        # the k-th of n at (k + 1/2) / n: merged, every prefix holds each group in proportion
        placed += [((k + 0.5) / len(queue), number, o) for k, o in enumerate(queue)]
    ordered = [o for _, _, o in sorted(placed, key=lambda p: p[:2])]
    return [opening_of(record, notes, settings, vocab) for record, notes in ordered[:limit]]


def opening_span(record, settings: CompareSettings) -> tuple[float, str, float]:
    """Where a piece's opening ends (its first ``primer_bars``, counted across the piece's
    changes of metre), the metre it is continued in (the one at its end), and where the asked
    span ends (quarters)."""
    primer_end = bars_end(record.metre(), settings.primer_bars)
    signature = metre_at(record.metre(), primer_end)
    return primer_end, signature, primer_end + settings.bars * bar_quarters(signature)


def opening_of(record, notes: list[Note], settings: CompareSettings, vocab: Vocabulary) -> Opening:
    """A corpus piece's opening: its first ``primer_bars`` as the primer, and what really
    followed, cut where the asked span ends."""
    primer_end, signature, end = opening_span(record, settings)
    opening = [n for n in notes if n.start < primer_end - 1e-9]
    primer = Primer(readable(record.name).replace("/", "_"), encode_notes(opening, vocab)[:-1], record.tempo, signature, primer_end)
    real = continuation(notes, 0.0, end)
    return Opening(primer.name, primer, real, end, record.key or estimate_key(real))


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
    notes, context = pitched(notes), pitched(context)  # drums have no pitch: every measure reads the pitched notes
    values = {**metrics.heard_measures(notes, context), **metrics.score_measures(notes, ranges), **metrics.harmony_features(notes)}
    statistics = metrics.piece_statistics(notes)
    for key in metrics.MEASURES:
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
    measures = []
    for key, info in metrics.MEASURES.items():  # read here: a test grows the registry
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
        f"{percent(found[label])} for {label}" for label in comparison.checkpoints if label in found
    ]
    if not parts:
        return ""
    parts[0] = parts[0].replace(" for ", " of the time for ", 1)
    sentence = "A classifier tells the samples from real continuations " + ", ".join(parts) + " (50 % = indistinguishable"
    if REAL_VS_REAL in found:
        sentence += f"; real from real: {percent(found[REAL_VS_REAL])}"
    return sentence + ")"


def percent(d) -> str:
    return f"{100 * d.accuracy:.0f} % [{100 * d.low:.0f}–{100 * d.high:.0f}]"


# ---- the comparison --------------------------------------------------------------------------------


def checkpoint_bits(run: Run, epoch: int, stepper, corpus, vocab, validation_notes: int, cache: Path | None = None) -> dict[str, float]:
    """Validation bits per note as the run's history recorded it (one source of truth, as
    ``composer info``), else computed the way training computes it; training bits on a subset
    (both with the NumPy stepper, ``LSTMStepper.nll``; kept in ``cache``, see ``cached_bits``)."""
    recorded = {row["epoch"]: row["val_bits_per_note"] for row in run.history()}
    validation = corpus.split("validation")
    if epoch in recorded and math.isfinite(recorded[epoch]):
        val = recorded[epoch]
    elif validation:
        val = cached_bits(cache, stepper, validation, validation_notes)
    else:
        val = math.nan
    train = corpus.split("train")[:TRAIN_PIECES_FOR_BITS]
    training = cached_bits(cache, stepper, train, sum(count_notes(p, vocab) for p in train)) if train else math.nan
    return {"validation": val, "training": training}


def cached_bits(cache: Path | None, stepper, pieces: list[np.ndarray], notes: int) -> float:
    """The stepper's bits per note on ``pieces``: from ``cache`` when an earlier page computed
    them, keyed by all they depend on (the weights, the pieces' tokens, their notes, and the
    version of the code that scores them), else computed and kept there. A cache that cannot be
    read or written only costs the time."""
    if cache is None:
        return bits_per_note(stepper.nll(pieces)[0], notes)
    digest = hashlib.sha256(f"{__version__} {stepper.digest()} {notes}".encode())
    for piece in pieces:
        digest.update(len(piece).to_bytes(8, "little") + np.asarray(piece, np.int64).tobytes())
    path = cache / "bits" / f"{digest.hexdigest()}.json"
    try:
        kept = json.loads(path.read_text())["bits_per_note"]
        if isinstance(kept, float) and math.isfinite(kept):
            return kept
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not there yet, or damaged: computed again and replaced
    bits = bits_per_note(stepper.nll(pieces)[0], notes)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps({"bits_per_note": bits}))
    except OSError:
        pass
    return bits


def stamp(root: Path) -> Path:
    """A new page folder named by the time, claimed (made empty) by this process alone: two
    comparisons started in the same second get ``STAMP`` and ``STAMP-2``."""
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


@dataclass
class Shown:
    """One cell of the page: a row's notes for one shown opening, as heard (primer included)."""

    row: str  # a checkpoint's label or REAL
    opening: Opening
    notes: list[Note]
    end: float | None  # where the asked span ends, in quarters: the files last until then


@dataclass
class Sampled:
    """One checkpoint's continuations of the chosen openings, each measured."""

    row: str  # "epoch 100"
    measured: list[dict[str, float]]  # measure_piece of each continuation
    copies: list[float]  # the longest copy from training of each, in beats
    shown: list[Shown]
    histogram: np.ndarray  # mean pitch-class shares of the continuations


@dataclass
class RealMusic:
    """What the samples are measured against (``real_music``)."""

    reference: list[dict[str, float]]  # real music's mean on every measure is taken over these
    rows: dict[str, list[dict[str, float]]]  # rows of real music beside the checkpoints' (OTHER_REAL)
    side: list[dict[str, float]]  # the classifier's real pieces, and their groups
    groups: list[str]
    training: list[dict[str, float]]  # the training pieces' continuations, measured
    copies: dict[str, list[float]] = field(default_factory=dict)  # REAL -> its longest copies
    histograms: dict[str, np.ndarray] = field(default_factory=dict)


def _compare(run, config, vocab, corpus, checkpoints, settings, sample_settings, directory, report) -> CompareResult:
    openings = page_openings(corpus, settings, vocab)
    count = max(settings.samples, settings.num)
    # sample i continues opening i mod n: with fewer openings than samples, each is continued
    # several times, by different generators
    chosen = [openings[i % len(openings)] for i in range(count)]
    shown = min(settings.num, len(openings))
    numbers = [int(label.split("-")[1]) for label, _ in checkpoints]
    validation_notes = int(config.data.validation_notes or sum(p.notes for p in corpus.records("validation")))
    audio.load_fluidsynth()  # here, not in a worker: its fallback warning belongs to this thread
    # One BLAS thread for the whole page, not per call: a worker's limit, restored when it ends,
    # would otherwise lift this thread's. The worker takes what runs outside the GIL (BLAS,
    # FluidSynth) beside this thread's Python: the second core's share of the page.
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(max_workers=1) as background:
        try:
            index = background.submit(TrainingIndex, corpus.split("train"))
            # each row's audio is rendered while the next rows are sampled and measured: the real
            # continuations' first (known before anything is sampled), each checkpoint's after it
            real_cells = [Shown(REAL, o, o.real, o.end) for o in chosen[:shown]] if settings.primer is None else []
            real_audio = render_in_background(real_cells, directory, settings, config, background)
            ranges = score.voice_ranges([decode_tokens(t, vocab) for t in corpus.split("train")[:80]])
            sampled, bits, rendered = [], {}, []
            for number in numbers:
                row = f"epoch {number}"
                report(f"{row}: sampling {count} continuations of {settings.bars:g} bars ({shown} shown)")
                sampler = generate.load_sampler(run, str(number))
                bits[row] = background.submit(checkpoint_bits, run, number, sampler.stepper, corpus, vocab, validation_notes, settings.cache)
                sampled.append(sample_checkpoint(sampler, row, chosen, shown, settings, sample_settings, ranges, index.result()))
                rendered += render_in_background(sampled[-1].shown, directory, settings, config, background)
            real = real_music(corpus, openings, chosen, settings, vocab, ranges, index.result())
            cells = [cell for s in sampled for cell in s.shown] + real_cells
            rendered += real_audio
            comparison = comparison_of(sampled, real, {row: b.result() for row, b in bits.items()}, [o.name for o in chosen], settings)
            summary = headline(comparison)
            report(summary)
            files = write_cells(cells, rendered, directory, settings, config)
        except BaseException:
            background.shutdown(cancel_futures=True)  # what has not started never will
            raise
    histograms = {**{s.row: s.histogram for s in sampled}, **real.histograms}
    baseline = (config.baseline or {}).get("bits_per_note")
    ceiling = settings.max_voices if settings.max_voices is not None else int(config.data.max_voices or corpus_voice_ceiling(corpus))
    table = settings_table(run, settings, comparison, shown, ceiling, baseline, files.synthesizers)
    plots = [
        ("validation bits per note by epoch; dashed: compared epochs", pages.curves_png(run.history(), numbers, directory / "curves.png", baseline)),
        ("pitch classes: generated against real", pages.pitch_class_png(histograms, directory / "pitch_classes.png")),
    ]
    return write_page_files(run, settings, comparison, summary, table, files, plots, [o.name for o in chosen[:shown]], directory)


def page_openings(corpus, settings: CompareSettings, vocab: Vocabulary) -> list[Opening]:
    """The primers of the page: the --primer file's opening, else the held-out pieces' (at most
    as many as samples are measured: the rest would never be continued)."""
    if settings.primer is None:
        return validation_openings(corpus, settings, vocab, limit=max(settings.samples, settings.num))
    primer = primer_from_file(settings.primer, settings.primer_bars, vocab)
    return [Opening(readable(primer.name), primer, key=estimate_key(decode_tokens(primer.tokens, vocab)))]


def sample_checkpoint(sampler, row, chosen, shown, settings, sample_settings, ranges, index) -> Sampled:
    """One checkpoint's continuation of every chosen opening, through the sampling path of
    ``composer generate``, measured; the first ``shown`` kept as heard for the page."""
    vocab = sampler.vocab
    samples = generate.continue_primers(sampler, [o.primer for o in chosen], sample_settings, bars=settings.bars)
    result = Sampled(row, [], [], [], np.zeros(12))
    continuations = []
    for i, (opening, tokens) in enumerate(zip(chosen, samples)):
        end = generate.span_end(opening.primer, sampler, settings.bars, None)
        heard = continuation(decode_tokens(tokens, vocab), 0.0, end)
        new = continuation(heard, opening.primer.end)
        result.measured.append(measure_piece(new, heard, ranges))
        result.copies.append(copy_beats(tokens[len(opening.primer.tokens) : -1], vocab, index))
        continuations.append(new)
        if i < shown:
            result.shown.append(Shown(row, opening, heard, end))
    result.histogram = mean_pitch_classes(continuations)
    return result


def real_music(corpus, openings, chosen, settings, vocab, ranges, index) -> RealMusic:
    """Real music to measure the samples against: the real continuations of the same openings,
    weighted as the samples are (opening i mod n once per sample), beside the training pieces'
    continuations of their own openings, made the same way (how much real music varies: the
    sanity row, the yardstick of "far" and the training half of the classifier's real-vs-real
    row). A --primer has no real continuation: excerpts of the training pieces, as long as a
    continuation, are the reference, and the training continuations the classifier's real side."""
    training = [
        measure_piece(continuation(o.real, o.primer.end), o.real, ranges)
        for o in validation_openings(corpus, settings, vocab, "train", limit=TRAIN_PIECES_FOR_BITS)
    ] if corpus.split("train") else []
    if settings.primer is not None:
        excerpts = training_excerpts(corpus, vocab, settings.bars * bar_quarters(openings[0].primer.time_signature or "4/4"))
        reference = [measure_piece(e, e, ranges) for e in excerpts[:: max(1, len(excerpts) // REFERENCE_EXCERPTS)]]
        return RealMusic(reference, {}, training, [f"train {i}" for i in range(len(training))], training)
    unique = list(dict.fromkeys(o.name for o in chosen))
    by_name = {o.name: o for o in openings}
    # the real continuations are cut where the samples' spans end (validation_openings)
    new = {n: continuation(by_name[n].real, by_name[n].primer.end) for n in unique}
    real_of = {n: measure_piece(new[n], by_name[n].real, ranges) for n in unique}
    return RealMusic(
        reference=[real_of[o.name] for o in chosen],
        rows={OTHER_REAL: training} if training else {},
        side=[real_of[n] for n in unique],
        groups=unique,
        training=training,
        copies={REAL: [copy_beats(encode_notes(new[n], vocab)[1:-1], vocab, index) for n in unique]},
        histograms={"real pieces": mean_pitch_classes([decode_tokens(t, vocab) for t in corpus.split("validation")])},
    )


def comparison_of(sampled: list[Sampled], real: RealMusic, bits, sample_groups: list[str], settings: CompareSettings) -> Comparison:
    """The numbers of the page: every measure's rows against real music, how often a classifier
    tells each checkpoint's continuations from real ones, bits per note and copying."""
    labels = [s.row for s in sampled]
    measures = compare_measures({**{s.row: s.measured for s in sampled}, **real.rows}, real.reference, labels, settings.seed)
    told = {
        s.row: metrics.classifier_test(feature_matrix(s.measured), feature_matrix(real.side), sample_groups, real.groups, settings.seed)
        for s in sampled
    }
    if settings.primer is None and real.training:
        told[REAL_VS_REAL] = metrics.classifier_test(
            feature_matrix(real.training), feature_matrix(real.side), [f"train {i}" for i in range(len(real.training))], real.groups, settings.seed
        )
    copies = {**{s.row: s.copies for s in sampled}, **real.copies}
    return Comparison(
        checkpoints=labels,
        bits=bits,
        measures=measures,
        copies={
            row: (float(np.mean(values)), *interval(bootstrap_means(values, seed=settings.seed + number)))
            for number, (row, values) in enumerate(copies.items())
        },
        longest_copy={row: float(max(values)) for row, values in copies.items()},
        samples=len(sample_groups),
        real_is_closest={m.key: real_holds(m, labels) for m in measures if OTHER_REAL in m.distances},
        reference=REAL if settings.primer is None else EXCERPTS,
        distinguishability=told,
    )


def cell_slug(cell: Shown) -> str:
    return f"{'real' if cell.row == REAL else cell.row.replace(' ', '-')}_{safe_stem(cell.opening.name)}"


def render_in_background(cells: list[Shown], directory: Path, settings: CompareSettings, config, background: ThreadPoolExecutor) -> list[tuple[Path, Future]]:
    """Each cell's MIDI file, written now, and its WAV, rendered by ``background`` from it
    (FluidSynth releases the GIL, so the audio costs this thread nothing)."""
    rendered = []
    for cell in cells:
        bpm = cell.opening.primer.bpm or float(config.data.median_bpm)
        midi = composer.corpus.write_midi(cell.notes, directory / f"{cell_slug(cell)}.mid", bpm, None, cell.opening.primer.time_signature or "4/4", cell.end)  # each note's instrument
        rendered.append((midi, background.submit(audio.render_wav, midi, directory / f"{cell_slug(cell)}.wav", settings.soundfont)))
    return rendered


@dataclass
class CellFiles:
    """The files of the page's cells, as ``write_page_files`` needs them."""

    cells: dict[tuple[str, str], pages.Cell]
    written: list[Path]
    synthesizers: set[str]


def write_cells(cells: list[Shown], rendered: list[tuple[Path, Future]], directory: Path, settings: CompareSettings, config) -> CellFiles:
    """Each cell's piano roll and engraved excerpt beside its MIDI and WAV (``render_in_background``)."""
    files = CellFiles({}, [], set())
    # one pitch range for every piano roll, so cells compare at a glance
    pitches = [n.pitch for cell in cells for n in cell.notes]
    pitch_span = (min(pitches), max(pitches)) if pitches else None
    for cell, (midi, wav) in zip(cells, rendered):
        opening, slug = cell.opening, cell_slug(cell)
        bpm = opening.primer.bpm or float(config.data.median_bpm)
        signature = opening.primer.time_signature or "4/4"
        title = f"{cell.row} · {opening.name}"
        image = pages.piano_roll_png(cell.notes, directory / f"{slug}.png", title, opening.primer.end or None, pitch_span, cell.end)
        start, stop = score.excerpt_window(opening.primer.end, signature)
        # one key per column: every row engraved in the opening's key, so the primer reads the same
        svg = score.render_excerpt_svg(cell.notes, directory / f"{slug}.svg", start, stop, opening.primer.end or None, opening.key or None, signature, bpm)
        rendering = wav.result()
        files.synthesizers.add(rendering.synthesizer)
        files.written.extend([midi, rendering.path, image, svg])
        files.cells[(cell.row, opening.name)] = pages.Cell(
            audio=rendering.path.name, image=image.name, midi=midi.name, score=svg.name, staves=score.staves_in(svg)
        )
    return files


def settings_table(run, settings: CompareSettings, comparison: Comparison, shown: int, ceiling: int, baseline, synthesizers: set[str]) -> dict[str, str]:
    """What made the page, as its settings table and metrics.json show it."""
    plural = "s" if comparison.samples != 1 else ""
    return {
        "run": readable(run.name),
        "epochs": ", ".join(comparison.checkpoints),
        "primers": "validation openings" if settings.primer is None else readable(str(settings.primer)),
        "primer bars": f"{settings.primer_bars:g}",
        "bars generated": f"{settings.bars:g}",
        "measured": f"{comparison.samples} sample{plural} per checkpoint ({shown} shown)",
        "temperature": f"{settings.temperature:g}",
        "top-k": str(settings.top_k),
        "top-p": f"{settings.top_p:g}",
        "voice ceiling": str(ceiling),
        "seed": str(settings.seed),
        "n-gram baseline": f"{baseline:.3f} bits/note" if baseline else "–",
        "audio": ", ".join(sorted(synthesizers)),
    }


def write_page_files(run, settings, comparison, summary, table, files: CellFiles, plots, columns, directory) -> CompareResult:
    """metrics.json, metrics.csv and index.html beside the cells' files and the plots."""
    labels = comparison.checkpoints
    page = pages.ComparisonPage(
        title=f"{readable(run.name)}: {' vs '.join(labels)}",
        headline=summary,
        settings=table,
        rows=labels + ([REAL] if settings.primer is None else []),
        columns=columns,
        cells=files.cells,
        comparison=comparison,
        plots=[(caption, path.name) for caption, path in plots],
    )
    written = files.written + [path for _, path in plots]
    written.append(write_text(directory / "metrics.json", json.dumps({"settings": table, "headline": summary, **comparison_dict(comparison)}, indent=1)))
    written.append(write_text(directory / "metrics.csv", metrics_csv(comparison)))
    written.append(pages.write_page(page, directory))
    return CompareResult(written[-1], labels, comparison, summary, written, files.synthesizers)


def mean_pitch_classes(pieces: list[list[Note]]) -> np.ndarray:
    used = [metrics.piece_statistics(p).pitch_class_histogram for p in pieces if p]
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

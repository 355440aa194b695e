"""The `composer` command line: parse options, call one function, print the result.

Heavy libraries (TensorFlow, music21, pretty_midi, matplotlib) are imported inside the
commands that need them, so `composer --help` answers at once.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer

from composer import ComposerError
from composer.config import PRIMER_BARS, VALIDATION_SHARE, CompareSettings, Limits, SampleSettings, TrainConfig, default_cache_dir

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False, help="Learn music from MIDI corpora with a stacked LSTM and compose new pieces.")
corpus_app = typer.Typer(no_args_is_help=True, help="Bundled and music21 corpora.")
app.add_typer(corpus_app, name="corpus")


def user_errors(command: Callable) -> Callable:
    """A ComposerError becomes one line on stderr and exit code 1, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ComposerError as error:
            typer.secho(f"error: {error}", err=True, fg="red")
            raise typer.Exit(1) from None

    return wrapper


def progress_bar(description: str):
    """A rich progress bar (silent when output is not a terminal) and its update callback."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console()
    # transient: a finished bar disappears instead of staying behind between the summary lines;
    # disabled off a terminal, where rich would still print an empty line when it stops
    bar = Progress(
        TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True, disable=not console.is_interactive,
    )
    task = bar.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return bar, update


@corpus_app.command("export")
@user_errors
def corpus_export(
    name: str = typer.Argument(..., help="bach-chorales, or a music21 composer/collection name"),
    dest: Path = typer.Argument(..., help="folder to write the MIDI files to"),
    jobs: int = typer.Option(os.cpu_count() or 1, "--jobs", "-j", help="parallel processes"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="name every file written or left as it was"),
) -> None:
    """Write a collection bundled with music21 as MIDI files (all parts, tempo and time signature
    kept), one per work and movement (one per tune of a work of several); never replaces a file."""
    from composer.corpus import collection_works, iter_export

    total = len(collection_works(name))
    bar, update = progress_bar("exporting")
    files = []
    with bar:
        for done, exported in enumerate(iter_export(name, dest, jobs), 1):
            files += exported
            update(done, total)
    written = [f.path for f in files if f.path and not f.existed]
    existing = [f.path for f in files if f.existed]
    for f in files:
        if f.reason:
            typer.echo(f"skipped {f.reason}")
        elif verbose:
            typer.echo(f"kept {f.path} (already there)" if f.existed else f"wrote {f.path}")
    skipped = len(files) - len(written) - len(existing)
    typer.echo(
        f"wrote {len(written)} MIDI file{'s' if len(written) != 1 else ''} to {dest}"
        + (f"; {len(existing)} already there, left as they were" if existing else "")
        + (f" ({skipped} skipped)" if skipped else "")
    )


@app.command()
@user_errors
def tokenize(
    sources: List[Path] = typer.Argument(..., help="MIDI/MusicXML/ABC files or folders (searched recursively)"),
    out: Path = typer.Option(..., "--out", "-o", help="directory for the tokenized corpus"),
    jobs: int = typer.Option(os.cpu_count() or 1, "--jobs", "-j", help="parallel processes"),
    no_cache: bool = typer.Option(False, "--no-cache", help="re-read every file instead of using the cache"),
    max_mb: float = typer.Option(Limits.max_bytes / 1e6, "--max-mb", help="skip files larger than this (.mxl: once decompressed)"),
    max_quarters: float = typer.Option(Limits.max_quarters, "--max-quarters", help="skip pieces longer than this many quarter notes (after silences over 4 bars shrink to 4 bars)"),
    max_tokens: int = typer.Option(Limits.max_tokens, "--max-tokens", help="skip pieces of more tokens than this"),
    validation: float = typer.Option(VALIDATION_SHARE, "--validation", help="share of pieces held out for validation"),
    velocity_bins: int = typer.Option(0, "--velocity-bins", help="tokenize velocity in this many bins (0: off)"),
    fine_durations: bool = typer.Option(False, "--fine-durations", help="durations and rests every eighth from 4 to 8 quarters (default: whole quarters there)"),
    tie_long_notes: bool = typer.Option(False, "--tie-long-notes", help="notes over the longest duration as tied durations (default: cut to it)"),
    instruments: bool = typer.Option(False, "--instruments", help="keep each note's instrument (GM family) and the drums: Program and Drum tokens"),
) -> None:
    """Tokenize music files into a corpus for training, with a train/validation split."""
    from composer.dataset import tokenize_corpus
    from composer.tokens import FINE_BEAT_RES, TokenizerConfig

    # checked before reading anything: an --out that is a file would only fail after all the work
    blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ComposerError(f"--out {out}: {blocker} is a file, not a folder; give a folder for the tokenized corpus")
    if max_mb <= 0 or max_quarters <= 0 or max_tokens <= 2:
        raise ComposerError("--max-mb, --max-quarters and --max-tokens must be positive")
    bar, update = progress_bar("tokenizing")
    with bar:
        summary = tokenize_corpus(
            sources,
            out,
            TokenizerConfig(
                velocity_bins=velocity_bins,
                **({"beat_res": FINE_BEAT_RES} if fine_durations else {}),
                long_notes="tie" if tie_long_notes else "clamp",
                instruments=instruments,
            ),
            jobs=jobs,
            limits=Limits(max_bytes=int(max_mb * 1e6), max_quarters=max_quarters, max_tokens=max_tokens),
            cache_dir=None if no_cache else default_cache_dir(),
            validation_share=validation,
            progress=update,
        )
    print_tokenize_summary(summary)


def print_tokenize_summary(summary) -> None:
    for source, reason in summary.skipped:
        typer.echo(f"skipped {source}: {reason}")
    typer.echo(
        f"files read: {summary.files}  skipped: {len(summary.skipped)}  cached: {summary.cache_hits}  "
        f"({summary.seconds:.2f} s)"
    )
    typer.echo(
        f"pieces: {summary.pieces} (train {summary.train_pieces}, validation {summary.validation_pieces})  "
        f"tokens: {summary.tokens:,}  notes: {summary.notes:,}  "
        f"vocabulary used: {summary.vocabulary_used}/{summary.vocabulary_size}"
    )
    for path in summary.written:
        typer.echo(f"wrote {path}")


def parse_epochs(text: str) -> tuple[int, ...]:
    try:
        return tuple(sorted({int(e) for e in text.split(",") if e.strip()}))
    except ValueError:
        raise ComposerError(f"--save-at wants epochs separated by commas, such as 100,150 (got {text!r})") from None


@app.command()
@user_errors
def train(
    data: Optional[Path] = typer.Argument(None, help="a tokenized corpus directory, or a folder of music files tokenized with the default token settings (for --instruments, --velocity-bins and the others, run composer tokenize first); with --resume: optional"),
    out: Path = typer.Option(..., "--out", "-o", help="run directory"),
    epochs: int = typer.Option(TrainConfig.epochs, "--epochs", help="train up to this epoch"),
    save_at: str = typer.Option(",".join(map(str, TrainConfig.save_at)), "--save-at", help="epochs whose checkpoints are kept, e.g. 100,150"),
    save_every: int = typer.Option(TrainConfig.save_every, "--save-every", help="also keep every N-th epoch (0: off)"),
    preset: Optional[str] = typer.Option(None, "--preset", help="small (2 x 256, the CPU recipe; default) or full (3 x 512, for GPUs)"),
    units: Optional[int] = typer.Option(None, "--units", help="LSTM units per layer (overrides the preset)"),
    layers: Optional[int] = typer.Option(None, "--layers", help="stacked LSTM layers (overrides the preset)"),
    embedding: Optional[int] = typer.Option(None, "--embedding", help="embedding size (overrides the preset)"),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="dropout between layers (overrides the preset)"),
    input_dropout: Optional[float] = typer.Option(None, "--input-dropout", help="dropout of each LSTM's input, one mask per window, keeps cuDNN (overrides the preset)"),
    embedding_dropout: Optional[float] = typer.Option(None, "--embedding-dropout", help="share of whole token vectors dropped in training (overrides the preset)"),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="decoupled weight decay (AdamW) when above 0"),
    window: Optional[int] = typer.Option(None, "--window", help="tokens per training window (overrides the preset)"),
    batch: Optional[int] = typer.Option(None, "--batch", help="windows per batch (overrides the preset)"),
    learning_rate: Optional[float] = typer.Option(None, "--learning-rate", help="peak Adam learning rate (overrides the preset)"),
    warmup_epochs: Optional[int] = typer.Option(None, "--warmup-epochs", help="epochs of linear warm-up (overrides the preset)"),
    decay: Optional[str] = typer.Option(None, "--decay", help="cosine (down to 5 % at the last epoch) or constant (overrides the preset)"),
    transpose: Optional[int] = typer.Option(None, "--transpose", help="random transposition range in semitones (default 5; 0: off)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run from its last completed epoch, with its own settings"),
    seed: Optional[int] = typer.Option(None, "--seed", help="fixes data order, augmentation and initialization (default 0)"),
    strategy: str = typer.Option(TrainConfig.strategy, "--strategy", help="default, mirrored (all local GPUs) or multiworker (TF_CONFIG)"),
    mixed_precision: bool = typer.Option(False, "--mixed-precision", help="float16 compute on GPUs"),
) -> None:
    """Train the stacked LSTM, keeping checkpoints at the epochs you name."""
    from composer.train import train_run

    recipe = {"window": window, "batch": batch, "learning_rate": learning_rate, "warmup_epochs": warmup_epochs,
              "decay": decay, "transpose": transpose, "seed": seed, "weight_decay": weight_decay}
    model = {"units": units, "layers": layers, "embedding": embedding, "dropout": dropout,
             "input_dropout": input_dropout, "embedding_dropout": embedding_dropout}
    given = {k: v for k, v in {**recipe, **model, "preset": preset}.items() if v is not None}
    if mixed_precision:
        given["mixed_precision"] = True
    config = TrainConfig.preset(
        preset or "small", epochs=epochs, save_at=parse_epochs(save_at), save_every=save_every, strategy=strategy, **recipe
    )
    bar, update = progress_bar("epoch")
    with bar:
        summary = train_run(data, out, config, preset or "small", model, resume, mixed_precision, typer.echo, update, given)
    print_train_summary(summary)
    if summary.interrupted:
        raise typer.Exit(130)


def print_train_summary(summary) -> None:
    if summary.epochs:
        best = min(summary.epochs, key=lambda r: r.val_bits_per_note if r.val_bits_per_note == r.val_bits_per_note else 1e9)
        seconds = sum(r.seconds for r in summary.epochs)
        typer.echo(
            f"trained epochs {summary.epochs[0].epoch}-{summary.epochs[-1].epoch} in {seconds:.0f} s; "
            f"best validation {best.val_bits_per_note:.3f} bits/note at epoch {best.epoch}"
            + (f" (n-gram baseline {summary.baseline_bits:.3f})" if summary.baseline_bits is not None else "")
        )
    for path in dict.fromkeys(summary.written):
        typer.echo(f"wrote {path}")


@app.command()
@user_errors
def baseline(
    data: Path = typer.Argument(..., help="a tokenized corpus directory, or a folder of music files"),
    max_order: Optional[int] = typer.Option(None, "--max-order", help="highest n-gram order to fit (default: raised until the score stops improving)"),
) -> None:
    """The yardstick: held-out bits per note of smoothed n-gram models (modified Kneser-Ney) for each n."""
    import tempfile

    from composer.baseline import baseline_scores, best_baseline
    from composer.dataset import TokenCorpus, tokenize_corpus

    with tempfile.TemporaryDirectory() as scratch:
        if not (data / "corpus.json").exists():
            tokenize_corpus([data], Path(scratch), cache_dir=default_cache_dir())
            data = Path(scratch)
        corpus = TokenCorpus.load(data)
    train, validation = corpus.split("train"), corpus.split("validation")
    if not validation or not train:
        raise ComposerError(f"{data}: the baseline needs both training and validation pieces")
    scores = baseline_scores(train, validation, corpus.vocab, max_order)
    best = best_baseline(scores)
    typer.echo(f"{'n':>3} {'bits/note':>10} {'bits/token':>11}")
    for score in scores:
        mark = "  <- best" if score is best else ""
        typer.echo(f"{score.order:>3} {score.bits_per_note:>10.3f} {score.bits_per_token:>11.3f}{mark}")
    searched = f"orders 1-{len(scores)} fitted" + ("" if max_order else f", the best {len(scores) - best.order} below the highest")
    typer.echo(f"best: n = {best.order}, {best.bits_per_note:.3f} bits per note on {len(validation)} validation pieces ({searched})")


@app.command()
@user_errors
def info(run: Path = typer.Argument(..., help="run directory")) -> None:
    """List a run's checkpoints with their epochs, validation bits per note and sizes; check each file."""
    from composer.model import checkpoint_problem
    from composer.runs import Run

    r = Run(run)
    config = r.config()
    history = {row["epoch"]: row for row in r.history()}
    model = config.model
    options = config.vocab().config.options()
    typer.echo(
        f"{run}: {model['layers']} x {model['units']} LSTM, vocabulary {model['vocab_size']}"
        f"{f' (tokenized with {options})' if options else ''}, {len(history)} epochs trained"
    )
    checkpoints = [(f"epoch {e}", e, p) for e, p in r.saved_epochs().items()]
    if r.last.exists():
        checkpoints.append((f"last (epoch {r.last_epoch()})", r.last_epoch(), r.last))
    typer.echo(f"{'checkpoint':<20} {'val bits/note':>14} {'size':>10}  path")
    expected = config.model_config()
    damaged = 0
    for label, epoch, path in checkpoints:
        bits = history.get(epoch, {}).get("val_bits_per_note", float("nan"))
        problem = checkpoint_problem(path, expected)
        damaged += problem is not None
        note = f"  DAMAGED: {problem}" if problem else ""
        typer.echo(f"{label:<20} {bits:>14.3f} {path.stat().st_size / 1e6:>8.2f} MB  {path}{note}")
    if damaged:
        raise ComposerError(f"{run}: {damaged} checkpoint file{'s' if damaged > 1 else ''} damaged or of another architecture (listed above)")


@app.command()
@user_errors
def generate(
    run: Path = typer.Argument(..., help="run directory"),
    epoch: str = typer.Option("last", "--epoch", help="a saved epoch, or last"),
    num: int = typer.Option(1, "--num", "-n", help="samples, generated together as one batch"),
    tokens: Optional[int] = typer.Option(None, "--tokens", help="exactly this many tokens after the primer"),
    bars: Optional[float] = typer.Option(None, "--bars", help="fill this many bars after the primer"),
    seconds: Optional[float] = typer.Option(None, "--seconds", help="fill this many seconds after the primer"),
    temperature: float = typer.Option(SampleSettings.temperature, "--temperature", help="below 1: safer; above 1: wilder; 0: greedy"),
    top_k: int = typer.Option(SampleSettings.top_k, "--top-k", help="sample among the k likeliest tokens (0: off)"),
    top_p: float = typer.Option(SampleSettings.top_p, "--top-p", help="sample from the smallest set holding this probability"),
    primer: Optional[Path] = typer.Option(None, "--primer", help="a MIDI/MusicXML file whose opening is continued"),
    primer_bars: float = typer.Option(PRIMER_BARS, "--primer-bars", help="bars of the primer to use"),
    max_voices: Optional[int] = typer.Option(None, "--max-voices", help="no more notes sounding at once (default: the corpus's ceiling; 0: no limit)"),
    seed: int = typer.Option(SampleSettings.seed, "--seed", help="the same seed gives the same samples"),
    bpm: Optional[float] = typer.Option(None, "--bpm", help="tempo when there is no primer (default: corpus median)"),
    time_signature: Optional[str] = typer.Option(None, "--time-signature", help="metre of the samples, e.g. 3/4 (default: the primer's, else the corpus's most common)"),
    program: Optional[int] = typer.Option(None, "--program", help="General MIDI program of every note (default: each note's instrument; piano without --instruments)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="folder for the MIDI files (default: RUN/samples/epoch-NNNN)"),
    musicxml: bool = typer.Option(False, "--musicxml", help="also write each sample as a MusicXML score (two staves; a part per instrument with --instruments corpora)"),
    no_ceiling: bool = typer.Option(False, "--no-ceiling", help="allow over 1000 samples, 100,000 tokens, 1000 bars or an hour"),
    wav: bool = typer.Option(False, "--wav", help="also write each sample as a WAV file, rendered as the comparison page's audio"),
) -> None:
    """Compose new pieces from a checkpoint and write them as MIDI (and MusicXML, WAV)."""
    if sum(x is not None for x in (tokens, bars, seconds)) > 1:
        raise ComposerError("give one of --tokens, --bars and --seconds")
    from composer.generate import generate as run_generate

    settings = SampleSettings(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, tokens=tokens, max_voices=max_voices)
    result = run_generate(run, epoch, num, settings, bars, seconds, primer, primer_bars, bpm, program, out, musicxml=musicxml, time_signature=time_signature, wav=wav, no_ceiling=no_ceiling)
    for path in result.paths + result.scores + result.audio:
        typer.echo(f"wrote {path}")
    count = len(result.paths)
    typer.echo(
        f"{count} sample{'s' if count != 1 else ''}, {sum(len(t) for t in result.tokens):,} tokens in {result.seconds:.2f} s "
        f"({result.tokens_per_second:,.0f} new tokens/s)"
    )


@app.command()
@user_errors
def compare(
    run: Path = typer.Argument(..., help="run directory"),
    epochs: str = typer.Option("100,150", "--epochs", help="saved epochs to compare, e.g. 100,150, or all"),
    num: int = typer.Option(CompareSettings.num, "--num", "-n", help="openings shown on the page with audio (columns)"),
    samples: int = typer.Option(CompareSettings.samples, "--samples", help="continuations measured per checkpoint (the shown ones among them)"),
    primer: Optional[Path] = typer.Option(None, "--primer", help="continue this file instead of validation openings"),
    primer_from: str = typer.Option("validation", "--primer-from", help="validation: openings of held-out pieces"),
    primer_bars: float = typer.Option(PRIMER_BARS, "--primer-bars", help="bars of each primer"),
    bars: float = typer.Option(CompareSettings.bars, "--bars", help="bars to generate after each primer"),
    temperature: float = typer.Option(SampleSettings.temperature, "--temperature", help="below 1: safer; above 1: wilder; 0: greedy"),
    top_k: int = typer.Option(SampleSettings.top_k, "--top-k", help="sample among the k likeliest tokens (0: off)"),
    top_p: float = typer.Option(SampleSettings.top_p, "--top-p", help="sample from the smallest set holding this probability"),
    max_voices: Optional[int] = typer.Option(None, "--max-voices", help="no more notes sounding at once (default: the corpus's ceiling; 0: no limit)"),
    seed: int = typer.Option(SampleSettings.seed, "--seed", help="the same seeds for every epoch"),
    soundfont: Optional[Path] = typer.Option(None, "--soundfont", help="a General MIDI .sf2 (default: TimGM6mb from pretty_midi)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="folder for the page (default: RUN/compare/<stamp>)"),
    no_ceiling: bool = typer.Option(False, "--no-ceiling", help="allow over 1000 samples or 256 bars"),
) -> None:
    """Listen to epochs side by side: the same primers continued by each checkpoint, with measures and their uncertainty."""
    if primer_from != "validation":
        raise ComposerError(f"--primer-from {primer_from!r}: only 'validation' is known")
    from composer.compare import compare as run_compare

    settings = CompareSettings(
        num=num, bars=bars, primer=primer, primer_bars=primer_bars, temperature=temperature, top_k=top_k, top_p=top_p,
        seed=seed, soundfont=soundfont, samples=samples, max_voices=max_voices, no_ceiling=no_ceiling,
    )
    result = run_compare(run, epochs, settings, typer.echo, out)
    print_compare_summary(result)


def print_compare_summary(result) -> None:
    from rich.console import Console
    from rich.table import Table

    comparison = result.comparison
    rows = list(comparison.measures[0].values) if comparison.measures else comparison.checkpoints
    table = Table(title=f"closer to real music? ({comparison.samples} samples per checkpoint, 95 % intervals)")
    table.add_column("measure")
    table.add_column("real", justify="right")
    for row in rows:
        table.add_column(row, justify="right")
    table.add_column("verdict")
    for m in comparison.measures:
        cells = [f"{m.values[r][0]:.3g} [{m.values[r][1]:.3g}, {m.values[r][2]:.3g}]" for r in rows]
        far = [r for r, is_far in m.far.items() if is_far]
        verdict = (f"{m.closest} closer" if m.closest else "no clear difference") + (f"; far: {', '.join(far)}" if far else "")
        table.add_row(m.name or m.key, f"{m.reference:.3g}", *cells, verdict)
    Console().print(table)
    for path in result.written:
        typer.echo(f"wrote {path}")
    typer.echo(result.headline)
    typer.echo(f"open {result.page}")


@app.command()
@user_errors
def demo(
    out: Path = typer.Option(Path("outputs/demo"), "--out", "-o", help="run directory of the demo"),
    epochs: int = typer.Option(8, "--epochs", help="epochs to train"),
    save_at: str = typer.Option("4,8", "--save-at", help="epochs kept and compared"),
    num: int = typer.Option(2, "--num", "-n", help="primers on the comparison page"),
    bars: float = typer.Option(8.0, "--bars", help="bars generated after each primer"),
) -> None:
    """The whole pipeline on the bundled Bach chorales: tokenize, train, compare, print the page."""
    from composer.demo import demo as run_demo

    bar, update = progress_bar("epoch")
    with bar:
        result = run_demo(out, epochs, parse_epochs(save_at), num, bars, typer.echo, update)
    for path in dict.fromkeys(result.written):
        typer.echo(f"wrote {path}")
    for page in result.pages:
        typer.echo(f"open {page}")


# TensorFlow's C++ start-up log ("I0000 00:00:… port.cc:153] oneDNN custom operations are on",
# "E0000 … failed call to cuInit" on machines without a GPU, and absl's line before them) is
# written by native code straight to file descriptor 2, past Python's sys.stderr and
# TF_CPP_MIN_LOG_LEVEL. Errors other than the GPU probe still get through.
NATIVE_LOG = re.compile(rb"^[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] ")
NATIVE_NOISE = re.compile(rb"^(E\d{4} [\d:.]+ +\d+ \S+:\d+\] .*(cuInit|cuda|CUDA)|WARNING: All log messages before absl::InitializeLog\(\))")


def filter_native_stderr() -> None:
    """Route file descriptor 2 through a pipe that drops TensorFlow's native start-up lines."""
    import atexit
    import threading

    try:
        terminal = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
    except OSError:
        return  # no stderr to filter (closed, or a sandbox without pipes): leave it as it is

    def pump() -> None:
        with os.fdopen(read_end, "rb") as pipe, os.fdopen(os.dup(terminal), "wb", buffering=0) as out:
            for line in pipe:
                if not (NATIVE_LOG.match(line) or NATIVE_NOISE.match(line)):
                    out.write(line)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()

    def finish() -> None:
        sys.stderr.flush()
        os.dup2(terminal, 2)  # closes the pipe's write end: the pump reads to the end and stops
        thread.join(timeout=5)

    atexit.register(finish)


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    filter_native_stderr()
    app()


if __name__ == "__main__":
    main()

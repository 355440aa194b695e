"""The `composer` command line: parse options, call one function, print the result.

Heavy libraries (TensorFlow, music21, pretty_midi, matplotlib) are imported inside the
commands that need them, so `composer --help` answers at once.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable, List, Optional

import typer

from composer import ComposerError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Learn music from MIDI corpora with a stacked LSTM and compose new pieces.")
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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
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
) -> None:
    """Write a collection bundled with music21 as MIDI files (all parts, tempo and time signature kept)."""
    from composer.corpus import collection_works, iter_export

    total = len(collection_works(name))
    bar, update = progress_bar("exporting")
    written, failed = 0, []
    with bar:
        for done, result in enumerate(iter_export(name, dest, jobs), 1):
            if isinstance(result, Path):
                written += 1
            else:
                failed.append(result)
            update(done, total)
    for reason in failed:
        typer.echo(f"skipped {reason}")
    typer.echo(f"wrote {written} MIDI files to {dest}" + (f" ({len(failed)} skipped)" if failed else ""))


@app.command()
@user_errors
def tokenize(
    sources: List[Path] = typer.Argument(..., help="MIDI/MusicXML/ABC files or folders (searched recursively)"),
    out: Path = typer.Option(..., "--out", "-o", help="directory for the tokenized corpus"),
    jobs: int = typer.Option(os.cpu_count() or 1, "--jobs", "-j", help="parallel processes"),
    no_cache: bool = typer.Option(False, "--no-cache", help="re-read every file instead of using the cache"),
    max_mb: float = typer.Option(10.0, "--max-mb", help="skip files larger than this"),
    validation: float = typer.Option(0.1, "--validation", help="share of pieces held out for validation"),
    velocity_bins: int = typer.Option(0, "--velocity-bins", help="tokenize velocity in this many bins (0: off)"),
) -> None:
    """Tokenize music files into a corpus for training, with a train/validation split."""
    from composer.dataset import default_cache_dir, tokenize_corpus
    from composer.tokens import TokenizerConfig

    bar, update = progress_bar("tokenizing")
    with bar:
        summary = tokenize_corpus(
            sources,
            out,
            TokenizerConfig(velocity_bins=velocity_bins),
            jobs=jobs,
            max_bytes=int(max_mb * 1e6),
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()

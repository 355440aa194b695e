"""Which duration grid: the default (clamped at 8 quarters, whole quarters above 4) against a
finer grid above 4 quarters and tied long notes, by held-out bits per note of the n-gram yardstick.

    .venv/bin/python benchmarks/duration_grid.py [SOURCES ...] [--jobs 1] [--max-order 16]

SOURCES default to the bundled chorales (midi_data/). Every piece is read once and encoded in
each of four settings: ``clamp`` (the default), ``fine`` (``tokens.FINE_BEAT_RES``, clamped),
``tie`` (the default grid, ``long_notes="tie"``) and ``fine+tie``. One split serves them all:
the one the default tokens give (``dataset.assign_splits``), so the held-out pieces are the same.
Printed first: how many pieces change metre. Then per setting: vocabulary size, tokens per note, the notes whose duration changes value
on the grid (by length: up to 4 quarters, 4 to 8, over 8; durations first rounded to the 1/12
quarter step), and the best order's held-out bits per note and bits per token (``baseline_scores``
fitted on the training pieces; the LSTM's yardstick). The design's rule: the default changes
only with a gain, or no loss, in held-out bits per note.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from composer.baseline import baseline_scores, best_baseline  # noqa: E402
from composer.corpus import Piece, find_music_files, read_pieces  # noqa: E402
from composer.dataset import assign_splits  # noqa: E402
from composer.tokens import FINE_BEAT_RES, NoteColumns, TokenizerConfig, Vocabulary, encode_notes, nearest_values, tied_values  # noqa: E402

SETTINGS = {
    "clamp": TokenizerConfig(),
    "fine": TokenizerConfig(beat_res=FINE_BEAT_RES),
    "tie": TokenizerConfig(long_notes="tie"),
    "fine+tie": TokenizerConfig(beat_res=FINE_BEAT_RES, long_notes="tie"),
}


def read(path: Path) -> list[tuple[str, NoteColumns, int]]:
    """(a hash naming the piece, its notes, its changes of metre) for every usable piece of a file."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        pieces = read_pieces(path)
    except Exception:
        return []
    return [(f"{digest}:{tune}", NoteColumns.of(p.notes), len(p.meta["metre"]) - 1) for tune, p in pieces if isinstance(p, Piece)]


def changed(notes: NoteColumns, vocab: Vocabulary) -> tuple[int, int, int]:
    """Notes whose length (rounded to the step) the grid cannot hold: up to 4, 4-8, over 8 quarters."""
    spq = vocab.config.steps_per_quarter
    steps = np.maximum(1, np.rint(notes.durations * spq)).astype(np.int64)
    spell = tied_values if vocab.config.ties else nearest_values
    differs = spell(steps, vocab.grid, np.full(len(steps), -1)) != steps
    return tuple(int((differs & band).sum()) for band in (steps <= 4 * spq, (steps > 4 * spq) & (steps <= 8 * spq), steps > 8 * spq))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="*", type=Path, default=[ROOT / "midi_data"])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--max-order", type=int, default=None, help="fit this order only (default: raised until it stops improving)")
    args = parser.parse_args()

    started = time.perf_counter()
    files = find_music_files(args.sources)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        pieces = [piece for result in pool.map(read, files, chunksize=4) for piece in result]
    changing = sum(1 for _, _, c in pieces if c)
    pieces = [(h, n) for h, n, _ in pieces]
    hashes = [h for h, _ in pieces]
    print(f"{len(files)} files, {len(pieces)} pieces, {sum(len(n) for _, n in pieces):,} notes, read in {time.perf_counter() - started:.0f} s")
    print(f"{changing} pieces change metre (meta['metre'])")
    default = Vocabulary(SETTINGS["clamp"])
    splits = assign_splits([encode_notes(n, default) for _, n in pieces], hashes, 0.1)
    print(f"split: {splits.count('train')} train, {splits.count('validation')} validation (the default tokens' split for every setting)")
    print(f"{'setting':10} {'vocab':>5} {'tok/note':>8} {'changed <=4':>11} {'4-8':>6} {'>8':>6} {'order':>5} {'bits/note':>9} {'bits/tok':>8}")
    for name, config in SETTINGS.items():
        vocab = Vocabulary(config)
        tokens = [encode_notes(n, vocab) for _, n in pieces]
        train = [t for t, s in zip(tokens, splits) if s == "train"]
        validation = [t for t, s in zip(tokens, splits) if s == "validation"]
        counts = np.sum([changed(n, vocab) for _, n in pieces], axis=0)
        notes = sum(len(n) for _, n in pieces)
        best = best_baseline(baseline_scores(train, validation, vocab, args.max_order))
        print(
            f"{name:10} {len(vocab):5d} {sum(len(t) for t in tokens) / notes:8.3f} {counts[0]:11,d} {counts[1]:6,d} {counts[2]:6,d}"
            f" {best.order:5d} {best.bits_per_note:9.5f} {best.bits_per_token:8.5f}"
        )
    print(f"{time.perf_counter() - started:.0f} s in all, load %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()

"""How fast is tokenizing with the symusic reader, against the mido reader it replaced and music21?

    .venv/bin/python benchmarks/tokenize_speed.py [--corpus midi_data/bach_chorales] [--limit 60] [--repeat 3] [--instruments]

Measured on the same files, one process, no cache, the user's path: ``tokenize_files(files,
config, jobs=1, cache_dir=None)`` (hash, read, screen, quantize, encode) as `composer tokenize`
runs it, with
  * symusic: the reader as it is (``corpus.read_midi``: symusic, mido where symusic would differ);
  * mido: ``corpus.read_midi_mido`` in its place, the pure-Python reader used before symusic;
  * music21: ``converter.parse(f, forceSource=True)`` then ``.flatten().notes``, what the classic
    Keras tutorial runs over its corpus (on the first ``--limit`` files: it is slow).
The symusic and mido runs alternate, best of ``--repeat`` each, so that a busy machine weighs on
both alike; the tokens of the two must be identical (else exit status 1). Targets: symusic at
least 5x mido's files/s, and at least 10x music21's. Then: files/s with every core, and the
re-run answered from the content-hash cache. Imports and one warm-up file are excluded from
every timing; the load average is printed beside each. ``--instruments`` measures it all with
Program and Drum tokens (``TokenizerConfig(instruments=True)``), and first the plain and the
instrument configurations alternating on the same files, with tokens per note of each.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import composer.corpus as corpus  # noqa: E402
from composer.corpus import find_music_files  # noqa: E402
from composer.dataset import tokenize_files  # noqa: E402
from composer.tokens import TokenizerConfig  # noqa: E402


def load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


@contextmanager
def mido_reader():
    """corpus.read_midi replaced by the mido reader, for the comparison only."""
    fast = corpus.read_midi
    corpus.read_midi = corpus.read_midi_mido
    try:
        yield
    finally:
        corpus.read_midi = fast


def tokens_of(files: list[Path], config: TokenizerConfig, jobs: int = 1, cache_dir: Path | None = None) -> list:
    results, _ = tokenize_files(files, config, jobs=jobs, cache_dir=cache_dir)
    bad = [(p.name, m["reason"]) for p, _, t, m in results if t is None]
    if bad:
        raise SystemExit(f"unexpected skipped files: {bad[:3]}")
    return [t for _, _, t, _ in results]


def timed(function) -> tuple[float, object, str]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result, load()


def music21_notes(files: list[Path]) -> int:
    from music21 import converter

    return sum(len(converter.parse(str(path), forceSource=True).flatten().notes) for path in files)


def compare_readers(files: list[Path], config: TokenizerConfig, repeat: int) -> tuple[tuple, tuple, bool]:
    """(seconds, load) of the best symusic run and of the best mido run, alternating, and
    whether their tokens are identical."""
    best = {"symusic": (float("inf"), ""), "mido": (float("inf"), "")}
    outputs = {}
    for _ in range(repeat):
        for name in best:
            if name == "mido":
                with mido_reader():
                    seconds, outputs[name], where = timed(lambda: tokens_of(files, config))
            else:
                seconds, outputs[name], where = timed(lambda: tokens_of(files, config))
            best[name] = min(best[name], (seconds, where))
    same = len(outputs["symusic"]) == len(outputs["mido"]) and all(
        (a == b).all() and len(a) == len(b) for a, b in zip(outputs["symusic"], outputs["mido"])
    )
    return best["symusic"], best["mido"], same


def compare_configs(files: list[Path], repeat: int) -> None:
    """Plain against instrument tokens on the same files, alternating (best of ``repeat``): files/s and tokens per note."""
    from composer.tokens import Vocabulary, count_notes

    best = {}
    for _ in range(repeat):
        for instruments in (False, True):
            config = TokenizerConfig(instruments=instruments)
            seconds, tokens, where = timed(lambda: tokens_of(files, config))
            notes = sum(count_notes(t, Vocabulary(config)) for t in tokens)
            if seconds < best.get(instruments, (float("inf"),))[0]:
                best[instruments] = (seconds, where, sum(len(t) for t in tokens) / notes, notes)
    for instruments, (seconds, where, per_note, notes) in best.items():
        label = "with --instruments" if instruments else "plain"
        print(f"{label:<20} {len(files) / seconds:>8.1f} files/s  {per_note:.3f} tokens/note  {notes:,} notes  {where}")
    print(f"speed with --instruments: {best[False][0] / best[True][0]:.0%} of plain; tokens per note {best[True][2] / best[False][2]:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "midi_data" / "bach_chorales")
    parser.add_argument("--limit", type=int, default=60, help="files for the music21 comparison (0: all)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes for the all-cores run")
    parser.add_argument("--repeat", type=int, default=3, help="keep the best of this many runs of each reader")
    parser.add_argument("--instruments", action="store_true", help="tokenize with Program and Drum tokens")
    args = parser.parse_args()

    files = find_music_files([args.corpus])
    if not files:
        raise SystemExit(f"{args.corpus}: no music files")
    subset = files[: args.limit] if args.limit else files
    config = TokenizerConfig(instruments=args.instruments)
    if args.instruments:
        compare_configs(files, max(1, args.repeat))

    import music21  # noqa: F401  (imports are not what is measured)
    import mido  # noqa: F401
    import symusic  # noqa: F401

    tokens_of(files[:1], config)
    with mido_reader():
        tokens_of(files[:1], config)
    music21_notes(files[:1])

    rows = []
    (t_fast, load_fast), (t_mido, load_mido), same = compare_readers(files, config, max(1, args.repeat))
    rows.append(("symusic reader, 1 process, no cache", len(files), t_fast, load_fast))
    rows.append(("mido reader, 1 process, no cache", len(files), t_mido, load_mido))
    t_subset, _, load_subset = timed(lambda: tokens_of(subset, config))
    t_m21, m21_count, load_m21 = timed(lambda: music21_notes(subset))
    rows.append(("symusic reader, music21's files", len(subset), t_subset, load_subset))
    rows.append(("music21 parse + flatten().notes", len(subset), t_m21, load_m21))
    t_jobs, _, load_jobs = timed(lambda: tokens_of(files, config, jobs=args.jobs))
    rows.append((f"symusic reader, {args.jobs} processes", len(files), t_jobs, load_jobs))
    with tempfile.TemporaryDirectory() as cache:
        t_fill, _, load_fill = timed(lambda: tokens_of(files, config, jobs=args.jobs, cache_dir=Path(cache)))
        t_cached, _, load_cached = timed(lambda: tokens_of(files, config, jobs=args.jobs, cache_dir=Path(cache)))
    rows.append(("filling the cache", len(files), t_fill, load_fill))
    rows.append(("cached re-run", len(files), t_cached, load_cached))

    print(f"corpus: {args.corpus} ({len(files)} files); cores: {os.cpu_count()}")
    print(f"{'measure':<38} {'files':>6} {'seconds':>9} {'files/s':>9} {'ms/file':>9}  load (1, 5, 15 min)")
    for label, n, seconds, where in rows:
        print(f"{label:<38} {n:>6} {seconds:>9.3f} {n / seconds:>9.1f} {1000 * seconds / n:>9.3f}  {where}")
    over_mido = t_mido / t_fast
    over_music21 = (t_m21 / len(subset)) / (t_subset / len(subset))
    print(f"symusic over mido, same {len(files)} files: {over_mido:.2f}x files/s "
          f"({'meets' if over_mido >= 5 else 'MISSES'} the 5x target); tokens {'identical' if same else 'DIFFER'}")
    print(f"symusic over music21, same {len(subset)} files: {over_music21:.1f}x "
          f"({'meets' if over_music21 >= 10 else 'MISSES'} the 10x target; music21 found {m21_count:,} notes)")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())

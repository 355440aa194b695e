"""How fast is tokenizing, against parsing the same files with music21 as the classic Keras tutorial does?

    .venv/bin/python benchmarks/tokenize_speed.py [--corpus midi_data/bach_chorales] [--limit 60]

Measured, on the same files, single process, no cache:
  * composer: ``tokenize_files(files, config, jobs=1, cache_dir=None)`` (read MIDI, quantize, encode);
  * music21: ``converter.parse(f, forceSource=True)`` then ``.flatten().notes`` — what the tutorial
    runs over the whole corpus on every training run (``forceSource`` keeps music21 from answering
    out of its own pickle cache, which the tutorial's first run on a machine does not have).
The ratio of the two is the speed-up (target: at least 10x). Then, on the whole corpus: files/s
with every core (no cache), and the re-run answered from the content-hash cache.
Imports and one warm-up file are excluded from every timing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from composer.corpus import find_music_files  # noqa: E402
from composer.dataset import tokenize_files  # noqa: E402
from composer.tokens import TokenizerConfig  # noqa: E402


REPEAT = 1


def timed(function) -> tuple[float, object]:
    """The best of REPEAT runs (a busy machine only ever adds time)."""
    best, result = float("inf"), None
    for _ in range(REPEAT):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


def music21_notes(files: list[Path]) -> int:
    from music21 import converter

    total = 0
    for path in files:
        score = converter.parse(str(path), forceSource=True)
        total += len(score.flatten().notes)
    return total


def ours(files: list[Path], config: TokenizerConfig, jobs: int, cache_dir: Path | None = None) -> int:
    results, _ = tokenize_files(files, config, jobs=jobs, cache_dir=cache_dir)
    bad = [(p.name, m["reason"]) for p, _, t, m in results if t is None]
    if bad:
        raise SystemExit(f"unexpected skipped files: {bad[:3]}")
    return sum(len(t) for _, _, t, _ in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "midi_data" / "bach_chorales")
    parser.add_argument("--limit", type=int, default=60, help="files for the music21 comparison (0: all)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes for the all-cores run")
    parser.add_argument("--repeat", type=int, default=1, help="keep the best of this many runs of each measure")
    args = parser.parse_args()
    global REPEAT
    REPEAT = max(1, args.repeat)

    files = find_music_files([args.corpus])
    if not files:
        raise SystemExit(f"{args.corpus}: no music files")
    subset = files[: args.limit] if args.limit else files
    config = TokenizerConfig()

    import music21  # noqa: F401  (imports are not what is measured)
    import pretty_midi  # noqa: F401

    ours(files[:1], config, jobs=1)
    music21_notes(files[:1])

    rows = []
    t_ours_subset, _ = timed(lambda: ours(subset, config, jobs=1))
    t_m21, m21_count = timed(lambda: music21_notes(subset))
    rows.append(("composer, 1 process, no cache", len(subset), t_ours_subset))
    rows.append(("music21 parse + flatten().notes", len(subset), t_m21))
    t_all_single, tokens = timed(lambda: ours(files, config, jobs=1))
    rows.append(("composer, whole corpus, 1 process", len(files), t_all_single))
    t_all_jobs, _ = timed(lambda: ours(files, config, jobs=args.jobs))
    rows.append((f"composer, whole corpus, {args.jobs} processes", len(files), t_all_jobs))
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        ours(files, config, jobs=args.jobs, cache_dir=Path(cache))
        t_fill = time.perf_counter() - started
        t_cached, _ = timed(lambda: ours(files, config, jobs=args.jobs, cache_dir=Path(cache)))
    rows.append(("composer, filling the cache", len(files), t_fill))
    rows.append(("composer, cached re-run", len(files), t_cached))

    print(f"corpus: {args.corpus} ({len(files)} files, {tokens:,} tokens); cores: {os.cpu_count()}")
    print(f"{'measure':<38} {'files':>6} {'seconds':>9} {'files/s':>9} {'ms/file':>9}")
    for label, n, seconds in rows:
        print(f"{label:<38} {n:>6} {seconds:>9.2f} {n / seconds:>9.1f} {1000 * seconds / n:>9.2f}")
    ratio = t_m21 / t_ours_subset
    verdict = "meets" if ratio >= 10 else "MISSES"
    print(f"speed-up over music21 on the same {len(subset)} files: {ratio:.1f}x ({verdict} the 10x target; "
          f"music21 found {m21_count:,} notes)")


if __name__ == "__main__":
    main()

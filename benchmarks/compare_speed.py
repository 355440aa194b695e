"""How long `composer compare` takes, against the time it takes to listen to what it makes, and
what the engraved scores add to it.

    python benchmarks/compare_speed.py [--run outputs/bach-small-reference] [--epochs 100,150] [--num 4] [--samples 32] [--bars 16]
    python benchmarks/compare_speed.py --against bcaf844 --commands-only --repeat 3

With --against COMMIT it first times the whole command, `composer compare RUN --epochs ...`,
each a fresh process (start-up, imports, everything written), for this tree and for COMMIT's
code (exported with `git archive` into a temporary folder, run on the same run and corpus),
alternately, so that a change in the machine's load falls on both; it prints the best of
--repeat of each and their ratio. This tree runs twice each time: with an empty cache (a page
of checkpoints never compared before: bits per note computed), then with the cache that run
filled (bits per note read back); COMMIT has no cache.

Runs the real comparison (sampling and measuring every sample, bits per note of each
checkpoint, audio, piano rolls, scores, page) into a temporary folder, twice: as the command
runs it, and with the score engraving replaced by a no-op (the baseline for what the scores
cost; target: at most 20 % more). Prints the wall time of each and the ratio of audio written
to compute spent: above 1, the page is ready before one could have listened to it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def export_commit(commit: str, into: Path) -> Path:
    """COMMIT's tracked files in ``into`` (git archive: the repository itself is left as it is)."""
    into.mkdir()
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def command_seconds(tree: Path, args: list[str], cache: Path) -> float:
    """Wall time of one whole `composer` command with ``tree``'s code and ``cache`` as the user's
    cache, in a fresh process (-P: the working directory, this repository, does not shadow PYTHONPATH)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-P", "-m", "composer.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tree), "XDG_CACHE_HOME": str(cache)}, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {' '.join(args)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return seconds


def whole_commands(args) -> None:
    """`composer compare` of this tree against COMMIT's, alternately, best of --repeat each."""
    command = ["compare", str(args.run), "--epochs", args.epochs, "--num", str(args.num), "--samples", str(args.samples), "--bars", f"{args.bars:g}"]
    before_load = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        before = export_commit(args.against, scratch / "before")
        # (name, code, cache): this tree with an empty cache, then with what that run kept there
        runs = [("this tree, empty cache", ROOT, "filled"), ("this tree, warm cache", ROOT, "filled"), (args.against, before, "other")]
        times: dict[str, list[float]] = {name: [] for name, _, _ in runs}
        for attempt in range(args.repeat):
            for number, (name, tree, cache) in enumerate(runs):
                out = scratch / f"page-{attempt}-{number}"
                times[name].append(command_seconds(tree, [*command, "--out", str(out)], scratch / f"cache-{attempt}-{cache}"))
    best = {name: min(values) for name, values in times.items()}
    print(f"whole command, each a fresh process, best of {args.repeat}; cpus: {os.cpu_count()}, load average "
          f"before {', '.join(f'{x:.2f}' for x in before_load)}, after {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"  composer {' '.join(command)}")
    for name, seconds in best.items():
        every = ", ".join(f"{t:.1f}" for t in times[name])
        print(f"    {name:<28} {seconds:>7.2f} s   (each: {every})")
    for name in list(best)[:2]:
        print(f"    ratio, {name:<21} {best[args.against] / best[name]:>7.2f}x faster than {args.against} (target: <= 12 s on a quiet machine)")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("outputs/bach-small-reference"))
    parser.add_argument("--epochs", default="100,150")
    parser.add_argument("--num", type=int, default=4)
    parser.add_argument("--bars", type=float, default=16)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--against", help="a commit whose whole command is timed beside this tree's")
    parser.add_argument("--repeat", type=int, default=3, help="whole commands per tree; the best is shown")
    parser.add_argument("--commands-only", action="store_true", help="only the whole-command timings (needs --against)")
    args = parser.parse_args()
    if args.against:
        whole_commands(args)
    if args.commands_only:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    started = time.perf_counter()
    import composer.score
    from composer.compare import CompareSettings, compare

    imported = time.perf_counter() - started
    settings = CompareSettings(num=args.num, bars=args.bars, samples=args.samples)

    def timed() -> tuple[float, float, object]:
        with tempfile.TemporaryDirectory() as scratch:
            began = time.perf_counter()
            result = compare(args.run, args.epochs, settings, lambda line: None, Path(scratch) / "page")
            seconds = time.perf_counter() - began
            audio = 0.0
            for path in (Path(scratch) / "page").glob("*.wav"):
                with wave.open(str(path)) as f:
                    audio += f.getnframes() / f.getframerate()
        return seconds, audio, result

    real_render = composer.score.render_excerpt_svg

    def no_score(notes, path, *rest, **options):
        Path(path).write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
        return Path(path)

    composer.score.render_excerpt_svg = no_score
    try:
        bare, _, _ = timed()
    finally:
        composer.score.render_excerpt_svg = real_render
    seconds, audio, result = timed()
    comparison = result.comparison
    print(f"run: {args.run}  epochs: {args.epochs}  shown: {args.num}  measured: {comparison.samples} per epoch  "
          f"bars: {args.bars:g}  cpus: {os.cpu_count()}  load: {os.getloadavg()[0]:.2f}")
    print(f"audio: {', '.join(sorted(result.synthesizers))}")
    print(f"{'measure':<44}{'seconds':>10}")
    print(f"{'imports':<44}{imported:>10.2f}")
    print(f"{'compare without engraved scores (baseline)':<44}{bare:>10.2f}")
    print(f"{'compare (everything on the page)':<44}{seconds:>10.2f}")
    print(f"{'audio written':<44}{audio:>10.2f}")
    print(f"scores add {100 * (seconds / bare - 1):+.0f} % (target: at most +20 %)")
    print(f"audio per second of compute: {audio / seconds:.2f}x (above 1: ready before you could listen to it)")
    print(result.headline)


if __name__ == "__main__":
    main()

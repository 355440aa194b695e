"""How long `composer compare` takes, against the time it takes to listen to what it makes, and
what the engraved scores add to it.

    python benchmarks/compare_speed.py [--run outputs/bach-small-reference] [--epochs 100,150] [--num 4] [--samples 32] [--bars 16]

Runs the real comparison (sampling and measuring every sample, bits per note of each
checkpoint, audio, piano rolls, scores, page) into a temporary folder, twice: as the command
runs it, and with the score engraving replaced by a no-op (the baseline for what the scores
cost; target: at most 20 % more). Prints the wall time of each and the ratio of audio written
to compute spent: above 1, the page is ready before one could have listened to it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import wave
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("outputs/bach-small-reference"))
    parser.add_argument("--epochs", default="100,150")
    parser.add_argument("--num", type=int, default=4)
    parser.add_argument("--bars", type=float, default=16)
    parser.add_argument("--samples", type=int, default=32)
    args = parser.parse_args()
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

"""How long `composer compare` takes, against the time it takes to listen to what it makes.

    python benchmarks/compare_speed.py [--run outputs/bach-small-reference] [--epochs 100,150] [--num 4] [--bars 16]

Runs the real comparison (sampling, bits per note of each checkpoint, audio, piano rolls,
metrics, page) into a temporary folder and prints the wall time of the whole call and the
ratio of audio written to compute spent: above 1, the page is ready before one could have
listened to it.
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
    args = parser.parse_args()

    started = time.perf_counter()
    from composer.compare import CompareSettings, compare

    imported = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as scratch:
        began = time.perf_counter()
        result = compare(args.run, args.epochs, CompareSettings(num=args.num, bars=args.bars), lambda line: None, Path(scratch))
        seconds = time.perf_counter() - began
        audio = 0.0
        for path in Path(scratch).glob("*.wav"):
            with wave.open(str(path)) as f:
                audio += f.getnframes() / f.getframerate()
    rows = len(result.metrics)
    print(f"run: {args.run}  epochs: {args.epochs}  primers: {args.num}  bars: {args.bars:g}  cpus: {os.cpu_count()}")
    print(f"audio: {', '.join(sorted(result.synthesizers))}; {rows} rows x {args.num} columns")
    print(f"{'measure':<40}{'seconds':>10}")
    print(f"{'imports':<40}{imported:>10.2f}")
    print(f"{'compare (everything on the page)':<40}{seconds:>10.2f}")
    print(f"{'audio written':<40}{audio:>10.2f}")
    print(f"audio per second of compute: {audio / seconds:.2f}x (above 1: ready before you could listen to it)")


if __name__ == "__main__":
    main()

"""Fuzz the readers: 10,000+ seeded malformed MIDI files through the tokenizer, counted by outcome.

    .venv/bin/python benchmarks/fuzz_corpus.py [--count 12000] [--seed 0] [--jobs 1]

The files come from ``tests/test_hostile.py::fuzz_files`` (byte flips and truncations of real
chorales, spliced chunks, random structurally valid MIDI with huge delta times and odd meta
events); the same seed always gives the same bytes. Every file goes through
``tokenize_files`` as `composer tokenize` runs it (no cache). Printed: files, kept, skipped by
reason (numbers and details folded so that kinds group), unexpected errors (reader bugs: must
be 0), the largest piece in tokens and in quarters, and the seconds taken. Exit status 1 if a
file escaped as an unexpected error or a kept piece broke a bound.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from composer.corpus import Limits  # noqa: E402
from composer.dataset import tokenize_files  # noqa: E402
from composer.tokens import TokenizerConfig, Vocabulary, decode_tokens  # noqa: E402
from test_hostile import fuzz_files, melody, smf  # noqa: E402


def reason_kind(reason: str) -> str:
    """A reason without its particulars: '12.3 MB is over…' and '99 MB is over…' are one kind."""
    kind = re.sub(r"\(.*\)", "(…)", reason)
    kind = re.sub(r"\b\d[\d.,e+^/]*", "N", kind)
    return kind[:90]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=12_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    chorales = sorted((ROOT / "midi_data" / "bach_chorales").glob("*.mid"))
    seeds = [p.read_bytes() for p in chorales[:: max(1, len(chorales) // 12)]] + [smf(melody()), smf(melody(), division=1)]
    limits = Limits()
    vocab = Vocabulary(TokenizerConfig())
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        files = fuzz_files(Path(scratch), seeds, args.count, seed=args.seed)
        made = time.perf_counter() - started
        started = time.perf_counter()
        results, _ = tokenize_files(files, vocab.config, args.jobs, limits, cache_dir=None)
        seconds = time.perf_counter() - started
    kept = [t for _, _, t, _ in results if t is not None]
    reasons = Counter(reason_kind(m["reason"]) for _, _, t, m in results if t is None)
    unexpected = sum(n for r, n in reasons.items() if r.startswith("unexpected"))
    most_tokens = max((len(t) for t in kept), default=0)
    most_quarters = max((max(n.start for n in decode_tokens(t, vocab)) for t in kept), default=0.0)
    print(f"files: {len(files):,} (made in {made:.1f} s)")
    print(f"kept: {len(kept):,}   skipped: {sum(reasons.values()):,}   unexpected errors: {unexpected}")
    print("skipped by reason:")
    for reason, count in reasons.most_common():
        print(f"  {count:6,}  {reason}")
    print(f"largest kept piece: {most_tokens:,} tokens (limit {limits.max_tokens:,}), last onset at {most_quarters:,.1f} quarters (limit {limits.max_quarters:,g})")
    print(f"tokenizing: {seconds:.1f} s, {len(files) / seconds:,.0f} files/s, {args.jobs} process(es)")
    broken = unexpected or most_tokens > limits.max_tokens or most_quarters > limits.max_quarters
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())

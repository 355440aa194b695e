"""Training speed per preset: the real input pipeline against in-memory arrays, and seconds per epoch.

For each preset the same compiled model is trained for ``--steps`` batches twice over, interleaved
``--repeats`` times (alternating which goes first):

* **pipeline**: the batches ``composer.dataset.training_windows`` streams (random offsets,
  transposition) through ``composer.train.train_step``, exactly what ``composer.train.fit`` runs;
* **arrays**: a NumPy array of windows cut beforehand, fed batch by batch to the same step.

The difference is the cost of the input pipeline (target: at most 10 %). The fastest repeat of
each is compared (the least disturbed by other work on the machine). Both are warmed up first:
the first steps trace the training graph. The estimated seconds per epoch are the epoch's steps
at the pipeline's speed plus one validation pass (``composer.train.token_nll``, as every epoch
runs it).

    .venv/bin/python benchmarks/train_speed.py                       # both presets, a few minutes on 2 cores
    .venv/bin/python benchmarks/train_speed.py --presets small --steps 40 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # usable from a checkout without installing

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO / "midi_data" / "bach_chorales",
                        help="music files to tokenize (default: the bundled chorales)")
    parser.add_argument("--presets", default="small,full", help="comma-separated model presets")
    parser.add_argument("--steps", type=int, default=8, help="timed batches per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches first (graph tracing)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved measurements of each feed; the fastest counts")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--transpose", type=int, default=5, help="the pipeline's transposition range")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="tokenizing processes")
    parser.add_argument("--no-cache", action="store_true", help="tokenize without the per-file cache")
    parser.add_argument("--no-validation", action="store_true", help="skip timing the validation pass")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 1 or args.repeats < 1:
        parser.error("--steps, --warmup and --repeats must be at least 1")
    return args


def tokenize(args: argparse.Namespace, directory: Path):
    from composer.dataset import TokenCorpus, tokenize_corpus
    from composer.config import default_cache_dir

    started = time.perf_counter()
    summary = tokenize_corpus(
        [args.data], directory, jobs=args.jobs, cache_dir=None if args.no_cache else default_cache_dir()
    )
    print(
        f"corpus: {summary.pieces} pieces ({summary.train_pieces} train, {summary.validation_pieces} validation), "
        f"{summary.tokens:,} tokens, tokenized in {time.perf_counter() - started:.1f} s "
        f"({summary.cache_hits} from cache)",
        flush=True,
    )
    return TokenCorpus.load(directory)


def pipeline_batches(train, args, pitch_tokens, steps: int, first_epoch: int):
    """``steps`` batches from composer's pipeline, running on into following epochs if needed."""
    from composer.dataset import training_windows

    dataset, per_epoch = training_windows(train, args.window, args.batch, 0, first_epoch, pitch_tokens, args.transpose)
    epoch = first_epoch
    while per_epoch * (epoch - first_epoch + 1) < steps:
        epoch += 1
        more, _ = training_windows(train, args.window, args.batch, 0, epoch, pitch_tokens, args.transpose)
        dataset = dataset.concatenate(more)
    return dataset.take(steps)


def array_windows(train, args, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The same kind of windows (random offsets, no transposition), cut into NumPy arrays in advance."""
    stream = np.concatenate(train).astype(np.int32)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(stream) - args.window - 1, steps * args.batch)
    windows = stream[starts[:, None] + np.arange(args.window + 1)[None, :]]
    return np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:])


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def measure(preset: str, corpus, args) -> dict:
    import keras

    from composer.dataset import training_windows
    from composer.config import ModelConfig, TrainConfig
    from composer.model import build_model
    from composer.train import compile_model, token_nll, train_step

    vocab = corpus.vocab
    train, validation = corpus.split("train"), corpus.split("validation")
    pitch_tokens = (vocab.pitch_offset, len(vocab.pitches))
    _, steps_per_epoch = training_windows(train, args.window, args.batch, 0, 1)

    keras.utils.set_random_seed(0)
    model = build_model(ModelConfig.preset(preset, len(vocab)))
    config = TrainConfig(window=args.window, batch=args.batch)
    compile_model(model, config)
    import tensorflow as tf

    step, _ = train_step(model, tf.distribute.get_strategy(), config, train, pitch_tokens)

    def run(batches) -> None:
        loss = None
        for x, y in batches:
            loss = step(x, y)
        float(loss)  # wait for the last step

    def feed_pipeline(steps: int, epoch: int):
        data = pipeline_batches(train, args, pitch_tokens, steps, epoch)
        return lambda: run(data)

    def feed_arrays(steps: int, seed: int):
        x, y = array_windows(train, args, steps, seed)
        batches = [(tf.constant(x[i : i + args.batch]), tf.constant(y[i : i + args.batch])) for i in range(0, len(x), args.batch)]
        return lambda: run(batches)

    warm = timed(feed_pipeline(args.warmup, 1000)) + timed(feed_arrays(args.warmup, 1000))
    times = {"pipeline": [], "arrays": []}
    for repeat in range(args.repeats):
        # build each feed before its clock starts: NumPy cutting is not part of training
        feeds = {"pipeline": feed_pipeline(args.steps, 1 + repeat), "arrays": feed_arrays(args.steps, repeat)}
        order = ["pipeline", "arrays"] if repeat % 2 == 0 else ["arrays", "pipeline"]  # no order bias
        for kind in order:
            times[kind].append(timed(feeds[kind]))
    tokens = args.steps * args.batch * args.window
    best = {kind: min(values) for kind, values in times.items()}
    validation_seconds = None
    if validation and not args.no_validation:
        validation_seconds = timed(lambda: token_nll(model, validation))
    train_seconds = steps_per_epoch * best["pipeline"] / args.steps
    return {
        "preset": preset,
        "parameters": int(model.count_params()),
        "steps_per_epoch": steps_per_epoch,
        "warmup_seconds": warm,
        "seconds": times,
        "pipeline_tokens_per_s": tokens / best["pipeline"],
        "arrays_tokens_per_s": tokens / best["arrays"],
        "overhead_percent": 100.0 * (best["pipeline"] - best["arrays"]) / best["arrays"],
        "train_seconds_per_epoch": train_seconds,
        "validation_seconds": validation_seconds,
        "epoch_seconds": train_seconds + (validation_seconds or 0.0),
    }


def print_table(results: list[dict], args) -> None:
    header = (
        f"{'preset':<7} {'params':>10} {'steps/ep':>8} {'pipeline tok/s':>15} {'arrays tok/s':>13} "
        f"{'overhead':>9} {'train s/ep':>11} {'val s':>7} {'est. s/epoch':>13}"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        val = f"{r['validation_seconds']:.1f}" if r["validation_seconds"] is not None else "-"
        print(
            f"{r['preset']:<7} {r['parameters']:>10,} {r['steps_per_epoch']:>8} {r['pipeline_tokens_per_s']:>15,.0f} "
            f"{r['arrays_tokens_per_s']:>13,.0f} {r['overhead_percent']:>8.1f}% {r['train_seconds_per_epoch']:>11.1f} "
            f"{val:>7} {r['epoch_seconds']:>13.1f}"
        )
    print()
    for r in results:
        verdict = "within" if r["overhead_percent"] <= 10.0 else "OVER"
        print(f"{r['preset']}: input pipeline overhead {r['overhead_percent']:+.1f} % ({verdict} the 10 % target)")
    print(
        f"batch {args.batch} x window {args.window}; {args.steps} timed steps after {args.warmup} warm-up steps, "
        f"fastest of {args.repeats}; few steps or a busy machine make the overhead noisy"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    print(
        f"TensorFlow {tf.__version__}; {len(gpus)} GPU(s)" + (f" ({gpus[0].name})" if gpus else "")
        + f"; {os.cpu_count()} CPU cores",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="train-speed-") as tmp:
        corpus = tokenize(args, Path(tmp) / "corpus")
    results = []
    for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
        print(f"measuring {preset} ...", flush=True)
        results.append(measure(preset, corpus, args))
    print_table(results, args)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

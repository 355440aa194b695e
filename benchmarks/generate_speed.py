"""Sampling speed: the stateful NumPy step (`composer.generate.sample` + `LSTMStepper`) against the classic
loop that re-runs a window of the last tokens through the Keras model for every new token.

    .venv/bin/python benchmarks/generate_speed.py                       # an untrained small-preset model
    .venv/bin/python benchmarks/generate_speed.py --run outputs/RUN --epoch 150
    .venv/bin/python benchmarks/generate_speed.py --run outputs/RUN --epoch 150 --tokens 500 --commands-only

The weights do not change the speed, so without --run an untrained model of the small preset (2 x 256)
is built. Times exclude start-up (importing TensorFlow, loading or building the model, first calls).
Every method uses the same grammar mask and the same filtering of the logits, so the difference is the
model evaluation. Each row is the best of --repeat runs (the eager row: one run). Everything runs as the
CLI runs it: after Keras has evaluated the model (its thread pools are up) and with the default threads.

With --run it first times whole commands, each a fresh process (start-up, imports, loading,
sampling, writing), best of --repeat, side by side in this one run:
  composer generate RUN --epoch E --num 1 --tokens N   weights read from the archive with h5py (no TensorFlow)
  ... weights through Keras                             the same command with load_sampler loading the model
                                                        with keras.saving.load_model, as it did before
  composer info RUN                                     every checkpoint checked as generate checks one

Rows:
  generate(), as the CLI           `composer generate RUN --num 1 --tokens N`'s own function (needs --run)
  ... without the BLAS limit       the same with threadpoolctl's one-thread limit disabled: the baseline
                                   the CLI had before (BLAS workers fight TensorFlow's over the cores)
  stepper, 1 stream         `sample(..., tokens=N)`: N tokens, the length-fitting search at the end included
  stepper, steady state     the same run less its first 50 and last 20 tokens (timed by the progress callback)
  stepper, batch of B       B streams advanced together; total tokens per second
  keras model(x) (eager)    the classic loop: the last W tokens through the model for each new token, eagerly
  keras model.predict       the same with `model.predict`, as most tutorials write it
  keras predict_on_batch    the same, compiled once, without predict's per-call data pipeline
  keras tf.function(model)  the same, compiled once: the fastest form of the classic loop
The classic loops start from a W-token opening, so each runs a single input shape (traced in the warm-up).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run", type=Path, help="a run directory (default: an untrained small-preset model)")
    parser.add_argument("--epoch", default="last", help="the run's checkpoint to load (a saved epoch or last)")
    parser.add_argument("--preset", default="small", help="preset of the untrained model when there is no --run")
    parser.add_argument("--tokens", type=int, default=2000, help="tokens sampled by the stepper, single stream")
    parser.add_argument("--batch", type=int, default=16, help="streams of the batched stepper run")
    parser.add_argument("--batch-tokens", type=int, default=500, help="tokens per stream in the batched run")
    parser.add_argument("--window", type=int, default=100, help="tokens re-run per step by the classic loop")
    parser.add_argument("--classic-tokens", type=int, default=100, help="tokens of the compiled classic loops")
    parser.add_argument("--predict-tokens", type=int, default=30, help="tokens of the model.predict loop (0: skip)")
    parser.add_argument("--eager-tokens", type=int, default=5, help="tokens of the eager model(x) loop, 0.3-2 s each (0: skip)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the best is shown")
    parser.add_argument("--blas-threads", type=int, help="cap NumPy's BLAS threads (default: as the environment says)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--commands-only", action="store_true", help="only the whole-command timings (needs --run)")
    return parser.parse_args()


# `composer generate` as it was before sampling went TensorFlow-free: the same CLI, with the
# checkpoint loaded by Keras (keras.saving.load_model, safe mode) and the stepper made from it
KERAS_COMMAND = """
import sys
import composer.generate as generate
from composer.model import LSTMStepper, StepperWeights, load_checkpoint


def keras_sampler(run, epoch):
    config = run.config()
    label, path = run.resolve(epoch)
    model = load_checkpoint(path, len(config.vocab()), config.model_config())
    run.check_still_holds(label, path)
    return generate.Sampler(label, config.vocab(), LSTMStepper(StepperWeights.from_keras(model)), config, generate.run_voice_ceiling(run, config))


generate.load_sampler = keras_sampler
import composer.cli

sys.argv = ["composer", *sys.argv[1:]]
composer.cli.main()
"""


def command_seconds(prefix: list[str], args: list[str], repeat: int) -> float:
    """The best wall time of a whole `composer` command in a fresh process."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, *prefix, *args], capture_output=True, text=True, env=env, cwd=root)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return min(times)


def whole_commands(args) -> None:
    """Whole commands side by side: generate without and with Keras, and info."""
    import tempfile

    repeat = max(1, args.repeat)
    with tempfile.TemporaryDirectory() as out:
        command = ["generate", str(args.run), "--epoch", args.epoch, "--num", "1", "--tokens", str(args.tokens), "--out", out]
        new = command_seconds(["-m", "composer.cli"], command, repeat)
        keras = command_seconds(["-c", KERAS_COMMAND], command, repeat)
    info = command_seconds(["-m", "composer.cli"], ["info", str(args.run)], repeat)
    print(f"whole commands, each a fresh process, best of {repeat}; cpus: {os.cpu_count()}, "
          f"load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"  composer generate {args.run} --epoch {args.epoch} --num 1 --tokens {args.tokens}")
    print(f"    {'weights read with h5py (no TensorFlow)':<44} {new:>7.2f} s  (target <= 1.0 s)")
    print(f"    {'weights through Keras (before)':<44} {keras:>7.2f} s")
    print(f"    {'ratio':<44} {keras / new:>7.1f}x faster (target >= 5x)")
    print(f"  composer info {str(args.run):<32} {info:>13.2f} s  (target <= 0.5 s)")
    print()


def load(args):
    """(model, vocabulary, description), built or loaded before any timing."""
    from composer.config import ModelConfig
    from composer.model import build_model, load_checkpoint
    from composer.tokens import Vocabulary

    if args.run is None:
        vocab = Vocabulary()
        return build_model(ModelConfig.preset(args.preset, len(vocab))), vocab, f"untrained {args.preset} preset"
    from composer.runs import Run

    run = Run(args.run)
    vocab = run.config().vocab()
    label, path = run.resolve(args.epoch)
    return load_checkpoint(path, len(vocab)), vocab, f"{args.run} {label}"


class NoEOS:
    """The stepper with EOS masked out, so every stream runs its whole length (costs nothing measurable)."""

    def __init__(self, stepper, eos: int):
        self.stepper, self.eos = stepper, eos

    def initial_state(self, batch):
        return self.stepper.initial_state(batch)

    def step(self, tokens, state):
        logits, state = self.stepper.step(tokens, state)
        logits[:, self.eos] = -1e9
        return logits, state


def stepper_run(stepper, vocab, streams: int, tokens: int, settings_kwargs: dict):
    """(seconds, tokens generated in all, one timestamp per step) for one sample() call."""
    import numpy as np

    from composer.generate import SampleSettings, sample
    from composer.tokens import BOS

    stamps: list[float] = []
    settings = SampleSettings(tokens=tokens, **settings_kwargs)
    primers = [np.array([BOS], np.int32)] * streams
    started = time.perf_counter()
    samples = sample(stepper, vocab, primers, settings, progress=lambda n: stamps.append(time.perf_counter()))
    seconds = time.perf_counter() - started
    return seconds, sum(len(s) - 2 for s in samples), stamps  # less BOS and EOS


def cli_run(args, kwargs: dict) -> tuple[float, int]:
    """(seconds, new tokens) of composer.generate.generate, the function `composer generate` calls."""
    import tempfile

    from composer.generate import SampleSettings, generate

    with tempfile.TemporaryDirectory() as out:
        result = generate(args.run, args.epoch, num=1, settings=SampleSettings(tokens=args.tokens, **kwargs), out=Path(out))
    return result.seconds, int(round(result.tokens_per_second * result.seconds))


class blas_unlimited:
    """Disable the sampler's one-BLAS-thread limit (for the baseline row)."""

    def __enter__(self):
        import contextlib

        import threadpoolctl

        self.saved = threadpoolctl.threadpool_limits
        threadpoolctl.threadpool_limits = lambda *a, **k: contextlib.nullcontext()

    def __exit__(self, *exc):
        import threadpoolctl

        threadpoolctl.threadpool_limits = self.saved


def window_primer(stepper, vocab, window: int, seed: int) -> list[int]:
    """A grammatical opening of exactly `window` tokens, so the classic loop runs one input shape."""
    import numpy as np

    from composer.generate import SampleSettings, sample
    from composer.tokens import BOS

    opening = sample(stepper, vocab, [np.array([BOS], np.int32)], SampleSettings(seed=seed, cap=window + 50))[0]
    return [int(t) for t in opening[:window]]


def classic_run(call, vocab, opening: list[int], window: int, tokens: int, settings_kwargs: dict) -> tuple[float, int]:
    """The classic loop: the last `window` tokens through the full model for every new token."""
    import numpy as np

    from composer.generate import SampleSettings, filter_logits
    from composer.tokens import EOS, Grammar

    settings = SampleSettings(**settings_kwargs)
    rng = np.random.default_rng(settings.seed)
    grammar = Grammar(vocab)
    for token in opening:
        grammar.advance(token)
    history = list(opening)
    started = time.perf_counter()
    for _ in range(tokens):
        x = np.array([history[-window:]], dtype=np.int32)
        logits = np.asarray(call(x))[0, -1]
        allowed = grammar.allowed()
        allowed[EOS] = False
        token = int(rng.choice(len(vocab), p=filter_logits(logits, allowed, settings)))
        grammar.advance(token)
        history.append(token)
    return time.perf_counter() - started, tokens


def best(runs: list[tuple[float, int]]) -> tuple[float, int]:
    """The run with the highest rate: (seconds, tokens)."""
    return max(runs, key=lambda r: r[1] / r[0])


def steady(stamps: list[float], per_step: int) -> tuple[float, int] | None:
    lo, hi = 50, len(stamps) - 20
    return (stamps[hi] - stamps[lo], (hi - lo) * per_step) if hi - lo > 100 else None


def main() -> None:
    args = parse_args()
    if args.blas_threads:
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(args.blas_threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.run is not None:
        whole_commands(args)
    if args.commands_only:
        return
    t0 = time.perf_counter()
    import keras
    import numpy as np
    import tensorflow as tf

    from composer.model import LSTMStepper, StepperWeights
    from composer.tokens import EOS

    imported = time.perf_counter() - t0
    t0 = time.perf_counter()
    model, vocab, description = load(args)
    stepper = LSTMStepper(StepperWeights.from_keras(model))
    loaded = time.perf_counter() - t0
    kwargs = {"temperature": args.temperature, "seed": args.seed}
    free = NoEOS(stepper, EOS)
    repeat = max(1, args.repeat)
    model(np.zeros((1, 8), np.int32), training=False)  # as in the CLI: Keras has run, its threads exist
    rows = []

    # ---- the CLI's own path, with and without the BLAS thread limit
    cli_rate = unlimited_rate = None
    if args.run is not None:
        cli = best([cli_run(args, kwargs) for _ in range(repeat)])
        rows.append(("generate(), as the CLI, --tokens N", cli[1], cli[0]))
        with blas_unlimited():
            loose = best([cli_run(args, kwargs) for _ in range(repeat)])
        rows.append(("generate() without the BLAS thread limit", loose[1], loose[0]))
        cli_rate, unlimited_rate = cli[1] / cli[0], loose[1] / loose[0]

    # ---- the stepper alone
    stepper_run(free, vocab, 1, 100, kwargs)  # warm-up
    single_runs = [stepper_run(free, vocab, 1, args.tokens, kwargs) for _ in range(repeat)]
    seconds, generated = best([(s, g) for s, g, _ in single_runs])
    rows.append(("stepper, 1 stream, --tokens N", generated, seconds))
    single = generated / seconds
    steadies = [x for x in (steady(st, 1) for _, _, st in single_runs) if x]
    if steadies:
        rows.append(("stepper, 1 stream, steady state", *reversed(best(steadies))))
    batch_runs = [stepper_run(free, vocab, args.batch, args.batch_tokens, kwargs) for _ in range(repeat)]
    seconds, generated = best([(s, g) for s, g, _ in batch_runs])
    rows.append((f"stepper, batch of {args.batch}, --tokens N (total)", generated, seconds))
    steadies = [x for x in (steady(st, args.batch) for _, _, st in batch_runs) if x]
    if steadies:
        rows.append((f"stepper, batch of {args.batch}, steady state", *reversed(best(steadies))))

    # ---- the classic loops
    compiled = tf.function(lambda x: model(x, training=False))
    classics = [  # (label, call, tokens, runs)
        ("keras model(x) (eager)", lambda x: model(x, training=False), args.eager_tokens, 1),
        ("keras model.predict", lambda x: model.predict(x, verbose=0), args.predict_tokens, repeat),
        ("keras predict_on_batch", model.predict_on_batch, args.classic_tokens, repeat),
        ("keras tf.function(model)", compiled, args.classic_tokens, repeat),
    ]
    opening = window_primer(free, vocab, args.window, args.seed)
    speedups = []
    for label, call, tokens, runs in classics:
        if tokens <= 0:
            continue
        call(np.array([opening], np.int32))  # warm-up: the one trace of the one input shape
        seconds, generated = best([classic_run(call, vocab, opening, args.window, tokens, kwargs) for _ in range(runs)])
        rows.append((f"{label}, window {args.window}", generated, seconds))
        speedups.append((label, single * seconds / generated))

    config = f"{len(stepper.cells)} x {stepper.units} LSTM, vocabulary {len(vocab)}"
    print(f"model: {description} ({config}); keras {keras.__version__}, backend {keras.backend.backend()}")
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    print(f"cpus: {os.cpu_count()}, load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}, BLAS threads: {blas}")
    print(f"start-up (not timed below): imports {imported:.2f} s, model and stepper {loaded:.2f} s; best of {repeat} runs")
    print()
    print(f"{'method':<42} {'tokens':>7} {'seconds':>9} {'tokens/s':>10} {'ms/token':>9}")
    for name, count, secs in rows:
        print(f"{name:<42} {count:>7} {secs:>9.3f} {count / secs:>10,.0f} {1000 * secs / count:>9.3f}")
    print()
    print(f"speed-up of the stepper (1 stream, --tokens N) over re-running a {args.window}-token window (target >= 100x):")
    for label, speedup in speedups:
        print(f"  {label:<40} {speedup:>9,.0f}x")
    print(f"single stream: {single:,.0f} tokens/s (target >= 1,000 on a 2-core CPU)")
    if cli_rate is not None:
        print(f"the CLI's path: {cli_rate:,.0f} new tokens/s (target >= 3,000), {cli_rate / unlimited_rate:.1f}x the same "
              f"without the BLAS thread limit ({unlimited_rate:,.0f})")


if __name__ == "__main__":
    main()

"""GPU check, one command: the device, proof that the fused cuDNN LSTM kernel runs, training
tokens/s for the presets at several batches in float32 and mixed precision, and sampling speed.

    .venv/bin/python benchmarks/gpu_check.py            # on a GPU: every row, a few minutes (at most 8)
    .venv/bin/python benchmarks/gpu_check.py --json r.json

Training rows time ``composer.train.train_step`` (the step ``composer train`` runs, on the real
``training_windows`` pipeline over the bundled chorales) after untimed warm-up steps; tokens/s =
steps × batch × window / seconds. The cuDNN proof: the op types in the traced training step's
graph (its function library included) must hold ``CudnnRNNV3`` (forward) and
``CudnnRNNBackpropV3`` (gradient) -- Keras 3 picks the fused kernel when the graph is traced,
only when a GPU is visible and the layer keeps cuDNN's conditions; otherwise the graph holds the
generic ``While`` loop of LSTM cells. Sampling rows time ``composer.generate.sample`` (the NumPy
stepper: it runs on the CPU on purpose, see README).

Without a GPU the CPU rows run at small sizes (a few steps) and the GPU rows are skipped with a
line that says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # usable from a checkout without installing
sys.path.insert(0, str(REPO / "benchmarks"))  # generate_speed.NoEOS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# sampling is small matrix products one token at a time: BLAS threads only fight each other (and
# TensorFlow's pools) there, 15x slower on a busy 2-core machine; set before NumPy is imported
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

BUDGET_S = 8 * 60
GPU_ROWS = [(p, b, m) for p in ("small", "full") for b in (64, 256) for m in (False, True)]
CPU_ROWS = [("small", 32, False), ("full", 32, False)]
CUDNN_OPS = {"CudnnRNNV3", "CudnnRNNBackpropV3"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO / "midi_data" / "bach_chorales")
    parser.add_argument("--window", type=int, default=128, help="tokens per training window (the presets' recipe)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per row (default: 30 on a GPU, 3 on a CPU)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (tracing, autotuning)")
    parser.add_argument("--sample-tokens", type=int, default=500)
    parser.add_argument("--json", type=Path)
    return parser.parse_args(argv)


def op_types(concrete) -> set[str]:
    """Every op type in a concrete function's graph and in the functions it calls."""
    graph = concrete.graph.as_graph_def()
    return {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}


def train_row(corpus, preset: str, batch: int, mixed: bool, args, steps: int) -> dict:
    import keras
    import tensorflow as tf

    from composer.config import ModelConfig, TrainConfig
    from composer.model import build_model
    from composer.train import compile_model, train_step

    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    try:
        vocab = corpus.vocab
        keras.utils.set_random_seed(0)
        model = build_model(ModelConfig.preset(preset, len(vocab), mixed_precision=mixed))
        config = TrainConfig(window=args.window, batch=batch, transpose=5)
        compile_model(model, config)
        strategy = tf.distribute.get_strategy()
        step, epoch_batches = train_step(model, strategy, config, corpus.split("train"), (vocab.pitch_offset, len(vocab.pitches)))
        batches = iter(epoch_batches(1)[0].repeat())
        first = next(batches)
        ops = op_types(step.get_concrete_function(*first))
        for _ in range(args.warmup):
            float(step(*next(batches)))
        started = time.perf_counter()
        for _ in range(steps):
            loss = step(*next(batches))
        float(loss)  # wait for the device
        seconds = time.perf_counter() - started
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return {
        "preset": preset, "batch": batch, "precision": "mixed_float16" if mixed else "float32",
        "steps": steps, "seconds": seconds, "tokens_per_s": steps * batch * args.window / seconds,
        "cudnn": sorted(CUDNN_OPS & ops), "generic_lstm_loop": "While" in ops or "StatelessWhile" in ops,
    }


def sample_rows(corpus, args) -> list[dict]:
    import keras
    import numpy as np
    # EOS masked out: an untrained model would end its streams early and leave the
    # exact-length search to dominate the timing
    from generate_speed import NoEOS

    from composer.generate import SampleSettings, sample
    from composer.config import ModelConfig
    from composer.model import LSTMStepper, StepperWeights, build_model
    from composer.tokens import BOS, EOS

    rows = []
    for preset in ("small", "full"):
        keras.utils.set_random_seed(0)
        stepper = NoEOS(LSTMStepper(StepperWeights.from_keras(build_model(ModelConfig.preset(preset, len(corpus.vocab))))), EOS)
        sample(stepper, corpus.vocab, [np.array([BOS], np.int32)], SampleSettings(tokens=50, seed=0))  # warm-up
        for streams in (1, 16):
            settings = SampleSettings(tokens=args.sample_tokens, seed=0)
            started = time.perf_counter()
            samples = sample(stepper, corpus.vocab, [np.array([BOS], np.int32)] * streams, settings)
            seconds = time.perf_counter() - started
            tokens = sum(len(s) - 2 for s in samples)
            rows.append({"preset": preset, "streams": streams, "tokens": tokens, "tokens_per_s": tokens / seconds})
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    import tensorflow as tf

    from composer.dataset import TokenCorpus, tokenize_corpus
    from composer.config import default_cache_dir

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        device = f"GPU: {details.get('device_name', gpus[0].name)} (compute capability {details.get('compute_capability')})"
    else:
        device = f"CPU only ({os.cpu_count()} cores)"
    print(f"TensorFlow {tf.__version__}; {device}", flush=True)

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        tokenize_corpus([args.data], Path(tmp) / "corpus", cache_dir=default_cache_dir())
        corpus = TokenCorpus.load(Path(tmp) / "corpus")

    # sampling first: once Keras has trained, TensorFlow's thread pools compete with NumPy's
    samples = sample_rows(corpus, args)
    rows = GPU_ROWS if gpus else CPU_ROWS
    steps = args.steps or (30 if gpus else 3)
    if not gpus:
        print("no GPU visible: GPU rows (batch 64/256, mixed precision, cuDNN proof) skipped; CPU rows at batch 32, few steps", flush=True)
    results = []
    for preset, batch, mixed in rows:
        if time.perf_counter() - started > BUDGET_S - 60:
            print(f"skipped {preset} batch {batch}{' mixed' if mixed else ''}: the 8-minute budget is nearly spent", flush=True)
            continue
        row = train_row(corpus, preset, batch, mixed, args, steps)
        results.append(row)
        kernel = "cuDNN fused (" + ", ".join(row["cudnn"]) + ")" if row["cudnn"] else (
            "generic While loop" if row["generic_lstm_loop"] else "no LSTM loop found")
        print(
            f"train {preset:<5} batch {batch:>3} {row['precision']:<13} {row['tokens_per_s']:>12,.0f} tokens/s  "
            f"({steps} steps, {row['seconds']:.1f} s)  LSTM kernel: {kernel}",
            flush=True,
        )
        if gpus and not row["cudnn"]:
            print("  WARNING: a GPU is visible but the training step does not use the fused cuDNN LSTM kernel", flush=True)
    for row in samples:
        print(f"sample {row['preset']:<5} {row['streams']:>2} stream(s)  {row['tokens_per_s']:>10,.0f} tokens/s (NumPy stepper, CPU)", flush=True)
    print(f"done in {time.perf_counter() - started:.0f} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"device": device, "train": results, "sample": samples}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

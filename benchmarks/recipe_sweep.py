"""Which training recipe learns the bundled chorales best per minute of a 2-core CPU?

Each candidate is a short run of the real trainer (``composer.train.train_run``: the same
tokens, the same 10 % validation split, the same validation bits per note as every run) with
its learning-rate schedule planned for ``--epochs``. Candidates run one after another, each in
its own process (a clean Keras state, and a crash costs one row), in the order listed below:
the most telling first, so a sweep stopped early still answers the main questions.

Resumable and safe to leave in the background: a finished candidate is one row appended to
``--csv`` (skipped on the next start); an unfinished one resumes from its last epoch.

    nohup .venv/bin/python benchmarks/recipe_sweep.py > outputs/sweep.log 2>&1 &
    .venv/bin/python benchmarks/recipe_sweep.py --table          # print the table from the CSV
    .venv/bin/python benchmarks/recipe_sweep.py --only base,lr-4e-3 --epochs 30
    nohup .venv/bin/python benchmarks/recipe_sweep.py --regularization --epochs 30 > outputs/sweep.log 2>&1 &

The first sweep (``CANDIDATES``, 12 epochs) chose the small preset's schedule; the second
(``--regularization``, ``REGULARIZERS``) starts from that recipe and asks what closes the gap
between training and validation. Its rows carry the eval-mode training bits (the first 64
training pieces, no dropout, no transposition) beside validation's, so over-fitting shows.

Tokens per second count the epoch's training tokens over its whole time, validation
included; the load average beside each row says how busy the 2 cores were.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # usable from a checkout without installing
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The starting point of the sweep (the small preset's model, 2 x 256, with this recipe); the
# preset's recipe in config.RECIPES is what the sweep chose, so it must not move the sweep's base.
BASE_RECIPE = {"window": 128, "batch": 32, "learning_rate": 2e-3, "warmup_epochs": 2, "decay": "cosine", "clip_norm": 1.0}
# frozen: the sweeps' base model, whatever the small preset's regularizers become
BASE_MODEL = {"embedding": 128, "units": 256, "layers": 2, "dropout": 0.2, "input_dropout": 0.0, "embedding_dropout": 0.0}
# name → (model overrides, recipe overrides) on top of the base
CANDIDATES: dict[str, tuple[dict, dict]] = {
    "before": ({}, {"window": 256, "batch": 32, "learning_rate": 1e-3, "warmup_epochs": 0, "decay": "constant"}),
    "base": ({}, {}),
    "w64-b32": ({}, {"window": 64}),
    "w128-b64": ({}, {"batch": 64}),
    "w64-b64": ({}, {"window": 64, "batch": 64}),
    "lr-4e-3": ({}, {"learning_rate": 4e-3}),
    "lr-1e-3": ({}, {"learning_rate": 1e-3}),
    # the two winners so far together, then the regularization and size questions
    "w64-lr-4e-3": ({}, {"window": 64, "learning_rate": 4e-3}),
    "dropout-0.1": ({"dropout": 0.1}, {}),
    "w64-lr-4e-3-dropout-0.1": ({"dropout": 0.1}, {"window": 64, "learning_rate": 4e-3}),
    "dropout-0.3": ({"dropout": 0.3}, {}),
    "3x256": ({"layers": 3}, {}),
    "2x384": ({"units": 384}, {}),
    "constant-2e-3": ({}, {"decay": "constant"}),
    "dropout-0": ({"dropout": 0.0}, {}),
    "clip-5": ({}, {"clip_norm": 5.0}),
    "embedding-256": ({"embedding": 256}, {}),
    "w256-b64": ({}, {"window": 256, "batch": 64}),
    "w128-b16": ({}, {"batch": 16}),
    "embedding-64": ({"embedding": 64}, {}),
    "w64-b16": ({}, {"window": 64, "batch": 16}),
    "w256-b16": ({}, {"window": 256, "batch": 16}),
}
# The second sweep, on top of the small preset's recipe as the first sweep left it (frozen here,
# so a later change of config.RECIPES does not move this sweep's base).
SMALL_RECIPE = {"window": 64, "batch": 32, "learning_rate": 4e-3, "warmup_epochs": 2, "decay": "cosine", "clip_norm": 1.0}
REGULARIZERS: dict[str, tuple[dict, dict]] = {
    "small": ({}, {}),
    "dropout-0.4": ({"dropout": 0.4}, {}),
    "dropout-0.5": ({"dropout": 0.5}, {}),
    "dropout-0.4-input-0.2": ({"dropout": 0.4, "input_dropout": 0.2}, {}),
    "dropout-0.4-wd-0.1": ({"dropout": 0.4}, {"weight_decay": 0.1}),
    "dropout-0.4-token-0.1": ({"dropout": 0.4, "embedding_dropout": 0.1}, {}),
    "3x256-dropout-0.4": ({"dropout": 0.4, "layers": 3}, {}),
    "2x384-dropout-0.5": ({"dropout": 0.5, "units": 384}, {}),
    "2x512-dropout-0.5": ({"dropout": 0.5, "units": 512}, {}),
    # the new small preset (AWD-LSTM's order of strengths: between layers > input > tokens)
    "dropout-0.5-input-0.2-token-0.1": ({"dropout": 0.5, "input_dropout": 0.2, "embedding_dropout": 0.1}, {}),
}
TRAIN_SAMPLE = 64  # training pieces scored in eval mode for the over-fitting gap
FIELDS = [
    "recipe", "epochs", "model", "recipe_settings", "parameters", "steps_per_epoch", "tokens_per_s",
    "seconds_per_epoch", "bits_by_epoch", "best_epoch", "best_bits", "load_start", "load_end", "finished",
    "last_bits", "train_bits",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=12, help="epochs per candidate (the schedule ends there)")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "sweep", help="run directories of the candidates")
    parser.add_argument("--csv", type=Path, default=REPO / "benchmarks" / "results" / "recipe_sweep.csv")
    parser.add_argument("--only", default="", help="comma-separated candidate names (default: all, in order)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", action="store_true", help="print the table from the CSV and stop")
    parser.add_argument("--regularization", action="store_true", help="the second sweep (REGULARIZERS) instead of the first")
    parser.add_argument("--record", type=Path, help="add the row of a finished run made elsewhere (e.g. the reference run) under --only's name")
    parser.add_argument("--loads", default="", help="with --record: the load averages at its start/end, e.g. 0.0/2.1")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process that trains one candidate
    return parser.parse_args(argv)


def corpus_dir(args: argparse.Namespace) -> Path:
    """The bundled chorales, tokenized once for every candidate (the cache makes re-runs instant)."""
    from composer.dataset import tokenize_corpus
    from composer.config import default_cache_dir

    directory = args.out / "corpus"
    if not (directory / "corpus.json").exists():
        tokenize_corpus([REPO / "midi_data" / "bach_chorales"], directory, cache_dir=default_cache_dir())
    return directory


def train_one(name: str, args: argparse.Namespace) -> dict:
    """Train candidate ``name`` (resuming if it was stopped) and return its CSV row."""
    from composer.runs import Run
    from composer.config import TrainConfig
    from composer.train import train_run

    candidates, base = (REGULARIZERS, SMALL_RECIPE) if args.regularization else (CANDIDATES, BASE_RECIPE)
    model_overrides, recipe = candidates[name]
    data = corpus_dir(args)
    run = Run(args.out / name)
    config = TrainConfig.preset("small", epochs=args.epochs, save_at=(), seed=args.seed, **{**base, **recipe})
    model_overrides = {**BASE_MODEL, **model_overrides}
    load_start = os.getloadavg()[0]
    train_run(data, run.root, config, "small", model_overrides, resume=run.last.exists(), report=lambda line: print(f"[{name}] {line}", flush=True))
    return run_row(name, run, data, load_start, os.getloadavg()[0])


def run_row(name: str, run, data: Path, load_start: float, load_end: float) -> dict:
    """The CSV row of a finished run: its history, settings and eval-mode training bits."""
    settings = json.loads(run.config_path.read_text())
    history = run.history()
    train = settings["train"]
    steps = max(1, (settings["data"]["train_tokens"] - 1) // train["window"] // train["batch"])  # as training_windows
    seconds = sum(row["seconds"] for row in history) / len(history)
    best = min(history, key=lambda row: row["val_bits_per_note"])
    keys = ("window", "batch", "learning_rate", "warmup_epochs", "decay", "clip_norm", "weight_decay")
    recipe_settings = {k: settings["train"].get(k, 0.0) for k in keys}
    model = settings["model"]
    extra = "".join(f" {label} {model[key]}" for key, label in (("input_dropout", "input"), ("embedding_dropout", "token")) if model.get(key))
    return {
        "recipe": name,
        "epochs": train["epochs"],
        "model": f"{model['layers']}x{model['units']} emb {model['embedding']} dropout {model['dropout']}{extra}",
        "recipe_settings": json.dumps(recipe_settings),
        "parameters": _parameters(model),
        "steps_per_epoch": steps,
        "tokens_per_s": round(steps * train["batch"] * train["window"] / seconds),
        "seconds_per_epoch": round(seconds, 1),
        "bits_by_epoch": json.dumps({row["epoch"]: round(row["val_bits_per_note"], 4) for row in history}),
        "best_epoch": best["epoch"],
        "best_bits": round(best["val_bits_per_note"], 4),
        "load_start": round(load_start, 2),
        "load_end": round(load_end, 2),
        "finished": time.strftime("%Y-%m-%d %H:%M"),
        "last_bits": round(history[-1]["val_bits_per_note"], 4),
        "train_bits": round(eval_training_bits(run, data), 4),
    }


def eval_training_bits(run, data: Path) -> float:
    """Bits per note of the first TRAIN_SAMPLE training pieces under the last epoch's weights,
    in eval mode (no dropout, no transposition): the other half of the over-fitting gap."""
    import math

    from composer.dataset import TokenCorpus
    from composer.model import load_checkpoint
    from composer.train import token_nll

    corpus = TokenCorpus.load(data)
    records = corpus.records("train")[:TRAIN_SAMPLE]
    pieces = corpus.split("train")[:TRAIN_SAMPLE]
    model = load_checkpoint(run.last)
    nll, _ = token_nll(model, pieces)
    return nll / math.log(2) / sum(r.notes for r in records)


def _parameters(model: dict) -> int:
    vocab, emb, units, layers = model["vocab_size"], model["embedding"], model["units"], model["layers"]
    lstm = sum(4 * units * ((emb if i == 0 else units) + units + 1) for i in range(layers))
    return vocab * emb + lstm + units * vocab + vocab


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_row(path: Path, row: dict) -> None:
    """Rewrite the CSV with the new row (rows of older sweeps keep their columns, new ones empty)."""
    from composer.storage import write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, FIELDS, restval="")
    writer.writeheader()
    writer.writerows(read_rows(path) + [row])
    write_text(path, buffer.getvalue())


def print_table(rows: list[dict]) -> None:
    if not rows:
        print("no finished candidates yet")
        return
    marks = sorted({int(e) for row in rows for e in json.loads(row["bits_by_epoch"])})
    every = 4 if marks[-1] <= 16 else 5 if marks[-1] <= 40 else 25
    shown = [e for e in marks if e % every == 0 or e == marks[-1]]
    width = max(15, *(len(row["recipe"]) for row in rows))
    header = f"{'recipe':<{width}} {'ep':>3} {'params':>9} {'steps':>5} {'tok/s':>7} {'s/ep':>6} " + " ".join(
        f"{'@' + str(e):>6}" for e in shown
    ) + f" {'best':>12} {'train':>6} {'gap':>6} {'load':>9}"
    print(header)
    print("-" * len(header))
    for row in sorted(rows, key=lambda r: float(r["best_bits"])):
        bits = json.loads(row["bits_by_epoch"])
        cells = " ".join(f"{bits[str(e)]:>6.3f}" if str(e) in bits else f"{'-':>6}" for e in shown)
        print(
            f"{row['recipe']:<{width}} {row['epochs']:>3} {int(row['parameters']):>9,} {row['steps_per_epoch']:>5} "
            f"{int(row['tokens_per_s']):>7,} {float(row['seconds_per_epoch']):>6.1f} {cells} "
            f"{float(row['best_bits']):>6.3f} @{row['best_epoch']:<4} {_gap(row)} {row['load_start']:>4}/{row['load_end']:<4}"
        )
    print("bits: validation bits per note at each epoch (lower is better); train: eval-mode bits per note of 64 "
          "training pieces at the last epoch; gap: validation minus train there; load: 1-minute load average at start/end")


def _gap(row: dict) -> str:
    if not row.get("train_bits"):
        return f"{'-':>6} {'-':>6}"
    return f"{float(row['train_bits']):>6.3f} {float(row['last_bits']) - float(row['train_bits']):>6.3f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.record:
        from composer.runs import Run

        run = Run(args.record)
        data = Path(json.loads(run.config_path.read_text())["data"]["corpus"])
        loads = [float(x) for x in args.loads.split("/")] if args.loads else [math.nan, math.nan]
        append_row(args.csv, run_row(args.only, run, data if (data / "corpus.json").exists() else run.corpus_dir, *loads))
        print_table(read_rows(args.csv))
        return 0
    if args.one:
        row = train_one(args.one, args)
        append_row(args.csv, row)
        return 0
    rows = read_rows(args.csv)
    if args.table:
        print_table(rows)
        return 0
    candidates = REGULARIZERS if args.regularization else CANDIDATES
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(candidates)
    unknown = [n for n in names if n not in candidates]
    if unknown:
        print(f"unknown candidates: {', '.join(unknown)} (known: {', '.join(candidates)})", file=sys.stderr)
        return 2
    done = {(row["recipe"], int(row["epochs"])) for row in rows}
    for name in names:
        if (name, args.epochs) in done:
            continue
        print(f"=== {name} ({args.epochs} epochs) ===", flush=True)
        command = [sys.executable, __file__, "--one", name, "--epochs", str(args.epochs), "--out", str(args.out),
                   "--csv", str(args.csv), "--seed", str(args.seed)] + (["--regularization"] if args.regularization else [])
        # each candidate in its own run directory per length, so a 12- and a 30-epoch sweep never mix
        command[command.index("--out") + 1] = str(args.out / f"epochs-{args.epochs}")
        if subprocess.call(command) != 0:
            print(f"{name}: failed (see above); going on with the next candidate", flush=True)
    print_table(read_rows(args.csv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

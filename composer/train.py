"""Training: epochs over random windows, checkpoints at chosen epochs, history, resume.

Read top to bottom: ``train_run`` prepares a run (corpus, vocabulary check, n-gram yardstick,
run.json), ``fit`` runs the epochs. Every epoch ends the same way: validation bits per note,
one history row, the kept checkpoint if this epoch was asked for, then ``last.keras`` (with
optimizer state) and ``last.json``. Files are written to a temporary name and renamed, so a
kill loses at most the epoch that was running.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from composer import ComposerError
from composer.baseline import baseline_scores, best_baseline
from composer.config import DECAYS, PRESETS, SIZES, STRATEGIES, ModelConfig, TrainConfig, default_cache_dir
from composer.dataset import TokenCorpus, corpus_voice_ceiling, tokenize_corpus, training_windows
from composer.model import build_model, load_checkpoint
from composer.runs import EPOCH_ENTRY, HISTORY_FIELDS, Run, RunConfig, RunData
from composer.storage import TEMPORARY_MARK, FolderLock, atomic_path, remove_leftovers, write_text
from composer.tokens import Vocabulary

def learning_rate(epoch: int, config: TrainConfig) -> float:
    """The learning rate of epoch ``epoch`` (1-based): a pure function of the epoch and the config.

    Linear warm-up to the peak over ``warmup_epochs``, then (``cosine``) a half cosine down to
    ``final_lr_fraction`` of the peak at the last epoch of the plan. A stretch added by a resume
    with more epochs decays from the rate its first epoch inherits to the same floor.
    """
    peak = config.learning_rate
    warmup = max(0, config.warmup_epochs)
    if epoch <= warmup:
        return peak * epoch / (warmup + 1)
    if config.decay == "constant":
        return peak
    floor = peak * config.final_lr_fraction
    plan = config.planned()
    start_rate, rate = peak, peak
    for index, (start, end) in enumerate(plan):
        begin = max(start, warmup) if index == 0 else start
        later = plan[index + 1][0] if index + 1 < len(plan) else None
        at = epoch if later is None or epoch <= later else later
        span = max(1, end - begin)
        progress = min(1.0, max(0.0, (at - begin) / span))
        rate = floor + (start_rate - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        if later is None or epoch <= later:
            return rate
        start_rate = rate
    return rate


@dataclass
class EpochResult:
    epoch: int
    loss: float
    val_loss: float
    val_bits_per_note: float
    seconds: float
    saved: Path | None = None


@dataclass
class TrainSummary:
    run: Path
    epochs: list[EpochResult] = field(default_factory=list)
    interrupted: bool = False
    baseline_bits: float | None = None
    written: list[Path] = field(default_factory=list)


# ---- the epochs ------------------------------------------------------------------------


def compile_model(model, config: TrainConfig) -> None:
    import keras

    if config.weight_decay > 0:
        optimizer = keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay, clipnorm=config.clip_norm)
        optimizer.exclude_from_weight_decay(var_names=["bias"])
    else:
        optimizer = keras.optimizers.Adam(config.learning_rate, clipnorm=config.clip_norm)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )


def per_token_nll(model):
    """A traced function (inputs, targets) → per-token negative log-likelihood; build once per model."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)] * 2)
    def per_token(x, y):
        logits = tf.cast(model(x, training=False), tf.float32)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)

    return per_token


VALIDATION_TOKENS = 8192  # tokens per validation call: a fraction of a second on 2 cores, so Ctrl-C is quick


def token_nll(model, pieces: list[np.ndarray], per_token=None, check: Callable[[], None] = lambda: None,
              most_tokens: int = VALIDATION_TOKENS) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) of tokens[1:] given tokens[:-1], over whole pieces,
    in calls of about ``most_tokens`` tokens with ``check`` (Ctrl-C) before each."""
    import tensorflow as tf

    per_token = per_token or per_token_nll(model)
    total, count = 0.0, 0
    for group in validation_batches(pieces, most_tokens):
        check()
        # pad to a multiple of 64 so a handful of shapes cover every batch (fewer retraces)
        width = int(math.ceil((max(len(p) for p in group) - 1) / 64) * 64)
        x = np.zeros((len(group), width), np.int32)
        y = np.zeros((len(group), width), np.int32)
        mask = np.zeros((len(group), width), bool)
        for row, piece in enumerate(group):
            n = len(piece) - 1
            x[row, :n], y[row, :n], mask[row, :n] = piece[:-1], piece[1:], True
        nll = per_token(tf.constant(x), tf.constant(y)).numpy()
        total += float(nll[mask].sum())
        count += int(mask.sum())
    return total, count


def validation_batches(pieces: list[np.ndarray], most_tokens: int) -> list[list[np.ndarray]]:
    """Pieces by length, grouped so that a group's padded size stays near ``most_tokens`` (a
    long piece alone, however long: it is scored whole, never cut)."""
    groups: list[list[np.ndarray]] = []
    for piece in sorted(pieces, key=len):
        group = groups[-1] if groups else None
        if group is not None and (len(group) + 1) * len(piece) <= most_tokens:
            group.append(piece)
        else:
            groups.append([piece])
    return groups


def fit(
    model,
    run: Run,
    train: list[np.ndarray],
    validation: list[np.ndarray],
    validation_notes: int,
    config: TrainConfig,
    first_epoch: int = 1,
    pitch_tokens: tuple[int, int] | None = None,
    on_epoch: Callable[[EpochResult], None] = lambda result: None,
    progress: Callable[[int, int], None] | None = None,
    strategy=None,
) -> list[EpochResult]:
    """Train epochs first_epoch..config.epochs; write checkpoints and history as each one ends.

    One loop for every strategy (Keras 3's ``model.fit`` cannot run under
    ``MultiWorkerMirroredStrategy``, keras-team/keras#20585): a traced step run by
    ``strategy.run`` on every replica. Under several workers only the chief writes files; the
    others train in step and write nothing.
    """
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    writes = is_chief(strategy)
    step, distributed_epoch = train_step(model, strategy, config, train, pitch_tokens)
    logs = tf.summary.create_file_writer(str(run.logs)) if writes else None
    results = []
    nll_function = per_token_nll(model)
    with CtrlC() as ctrl_c:
        for epoch in range(first_epoch, config.epochs + 1):
            ctrl_c.check()
            results.append(_epoch(model, run, validation, validation_notes, config, epoch, step, distributed_epoch,
                                  nll_function, writes, logs, progress, ctrl_c))
            on_epoch(results[-1])
    return results


class CtrlC:
    """Ctrl-C during training, also when TensorFlow's C++ code swallowed the KeyboardInterrupt
    Python raised inside it: the signal is remembered, and ``check`` raises it between steps
    (training steps and validation batches, each well under a second or two). While an epoch's
    files are written (``writing``) it waits until they are all there, so a Ctrl-C never leaves
    a history row without its checkpoint."""

    def __enter__(self) -> "CtrlC":
        import signal
        import threading

        self.pressed = False
        self.deferring = False
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.pressed = True
        if not self.deferring:
            raise KeyboardInterrupt

    def check(self) -> None:
        if self.pressed:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def writing(self):
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        self.check()

    def __exit__(self, *exc) -> None:
        import signal

        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _epoch(model, run, validation, validation_notes, config, epoch, step, distributed_epoch, nll_function,
           writes, logs, progress, ctrl_c) -> EpochResult:
    """One epoch: its steps, validation, then its files (history row, kept checkpoint, last.*)."""
    import tensorflow as tf

    started = time.perf_counter()
    reseed_dropout(model, config.seed, epoch)
    model.optimizer.learning_rate = learning_rate(epoch, config)
    batches, steps = distributed_epoch(epoch)
    if progress is not None:
        progress(0, steps)
    losses = []
    try:
        for done, batch in enumerate(batches, start=1):
            ctrl_c.check()
            losses.append(step(*batch))
            if progress is not None:
                progress(done, steps)
        loss = float(np.mean([float(value) for value in losses]))
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
            tf.errors.AbortedError, tf.errors.InternalError) as error:
        # a collective that lost a peer: say so in one line instead of a C++ stack
        reason = re.sub(r"\{\{.*?\}\}\s*", "", error.message or type(error).__name__).strip().splitlines()[0][:200]
        raise ComposerError(f"training stopped in epoch {epoch}: a worker is gone or unreachable ({reason})") from None
    val_loss = val_bits = float("nan")
    if validation:
        nll, tokens = token_nll(model, validation, per_token=nll_function, check=ctrl_c.check)
        val_loss = nll / tokens
        val_bits = nll / math.log(2) / max(1, validation_notes)
    seconds = time.perf_counter() - started
    result = EpochResult(epoch, loss, val_loss, val_bits, seconds)
    if writes:
        with ctrl_c.writing():
            write_epoch(model, run, config, result, logs)
    return result


def write_epoch(model, run: Run, config: TrainConfig, result: EpochResult, logs) -> None:
    """An epoch's files: its history row, TensorBoard scalars, the kept checkpoint, last.*."""
    import tensorflow as tf

    epoch = result.epoch
    append_history(run, result)
    with logs.as_default():
        tf.summary.scalar("epoch_loss", result.loss, step=epoch)
        tf.summary.scalar("epoch_learning_rate", learning_rate(epoch, config), step=epoch)
    logs.flush()
    if config.keeps(epoch):
        result.saved = save_model(model, run.checkpoint(epoch), include_optimizer=False, epoch=epoch)
    save_model(model, run.last, include_optimizer=True, epoch=epoch)
    write_text(run.last_state, json.dumps({"epoch": epoch}))


def train_step(model, strategy, config: TrainConfig, train: list[np.ndarray], pitch_tokens):
    """(step, epoch_batches): a traced training step for ``strategy`` and a function giving
    one epoch's distributed batches and its number of steps.

    ``config.batch`` is the batch of one worker, split among its local replicas; the global
    batch is ``config.batch`` × workers, and the loss is averaged over it, so the update is
    that of one process training on the union of the workers' batches.
    """
    import tensorflow as tf


    optimizer = model.optimizer
    replicas = strategy.num_replicas_in_sync
    # the default strategy (no scope) runs the step directly: nothing to distribute or sum
    plain = type(strategy).__name__ == "_DefaultDistributionStrategy"
    if not optimizer.built:
        with strategy.scope():
            optimizer.build(model.trainable_variables)

    def epoch_batches(epoch: int):
        steps = []

        def worker_dataset(context: tf.distribute.InputContext):
            local = context.num_replicas_in_sync // context.num_input_pipelines
            if config.batch % local:
                raise ComposerError(f"--batch {config.batch} does not split evenly over {local} local replicas")
            windows, count = training_windows(
                train, config.window, config.batch, config.seed, epoch, pitch_tokens, config.transpose,
                worker=(context.input_pipeline_id, context.num_input_pipelines),
            )
            steps.append(count)
            # each local replica takes its share of the worker's batch, in order
            return windows if local == 1 else windows.rebatch(config.batch // local)

        if plain:
            return worker_dataset(tf.distribute.InputContext()), steps[0]
        batches = strategy.distribute_datasets_from_function(worker_dataset)
        return batches, steps[0]

    workers = 1 if plain else max(1, replicas // len(strategy.extended.worker_devices))
    global_batch = config.batch * workers

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(x, training=True), tf.float32)
            per_window = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits), axis=1)
            loss = tf.nn.compute_average_loss(per_window, global_batch_size=global_batch)
            scaled = optimizer.scale_loss(loss)
        # dense gradients everywhere: Keras's Adam treats the embedding's sparse gradient per
        # occurrence (squares before summing repeated rows), so a batch split over replicas
        # would otherwise update differently from the same batch in one piece
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(scaled, model.trainable_variables)]
        if not plain:
            grads = clipped_global_gradients(optimizer, grads, replicas)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function
    def step(x, y):
        if plain:
            return replica_step(x, y)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_step, args=(x, y)), axis=None)

    return step, epoch_batches


def clipped_global_gradients(optimizer, grads, replicas: int):
    """Sum the replicas' gradients and clip the sum, returned as each replica's share.

    Keras 3 clips each replica's gradient *before* summing them, so --clip-norm would mean
    something else on 2 workers than on 1. Here the sum is clipped as one process would clip
    it; the optimizer then sums the shares again (its clipping of a share, at most
    clipnorm / replicas long, changes nothing). This costs a second all-reduce per step.
    """
    import tensorflow as tf

    total = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, list(grads))
    scale = getattr(optimizer, "dynamic_scale", None)  # a LossScaleOptimizer's gradients are scaled
    if scale is not None:
        total = [g / tf.cast(scale, g.dtype) for g in total]
    if optimizer.clipnorm:  # each gradient by its own norm, as Keras's ``clipnorm`` does
        total = [tf.clip_by_norm(g, optimizer.clipnorm) for g in total]
    if scale is not None:
        total = [g * tf.cast(scale, g.dtype) for g in total]
    return [g / replicas for g in total]


def is_chief(strategy) -> bool:
    """The worker that writes the run: task 0 (or the "chief" task) of a multi-worker cluster,
    the only process otherwise."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return chief_task(resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict())


def chief_task(task_type: str | None, task_id: int | None, cluster: dict) -> bool:
    if "chief" in cluster:
        return task_type == "chief"
    return task_type in (None, "worker") and (task_id or 0) == 0


def reseed_dropout(model, seed: int, epoch: int) -> None:
    """Dropout masks from (seed, epoch, layer): Keras does not save its generators' counters,
    so without this a resumed run would draw other masks than an uninterrupted one. The LSTMs'
    input dropout draws from its cell's generator, numbered after the Dropout layers so that
    runs without it keep the masks they always had."""
    import keras

    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    cells = [layer.cell for layer in model.layers if isinstance(layer, keras.layers.LSTM) and layer.cell.dropout > 0]
    for index, owner in enumerate(dropouts + cells):
        generator = getattr(owner, "seed_generator", None)
        if generator is None:
            continue  # a rate of 0 draws nothing, and Keras gives it no generator
        state = generator.state
        state.assign(np.array([seed * 1_000_003 + epoch * 1009 + index, 0], dtype=state.dtype))


def save_model(model, path: Path, include_optimizer: bool, epoch: int | None = None) -> Path:
    """Save atomically; kept epochs leave the optimizer out (a third of the size).

    ``epoch`` is written into the archive before it is renamed into place, so the weights and
    the epoch they hold can never disagree, whenever the process is killed.
    """
    import zipfile

    import keras


    with atomic_path(path) as tmp:
        if include_optimizer:
            model.save(tmp)
        else:
            # from_config gives an uncompiled twin (clone_model would carry a fresh optimizer)
            copy = keras.Model.from_config(model.get_config())
            copy.set_weights(model.get_weights())
            copy.save(tmp)
        if epoch is not None:
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(EPOCH_ENTRY, json.dumps({"epoch": epoch}))
    return path


def append_history(run: Run, result: EpochResult) -> None:
    """Rewrite history.csv with the new row, dropping rows from epochs being redone."""
    rows = [r for r in run.history() if r["epoch"] < result.epoch]
    rows.append({k: getattr(result, k) for k in HISTORY_FIELDS})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, HISTORY_FIELDS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text(run.history_path, buffer.getvalue())


# ---- a run ---------------------------------------------------------------------------------


def load_corpus(data: Path, into: Path, report: Callable[[str], None]):
    """DATA is a tokenized corpus, or music files tokenized (with the cache) into ``into``."""

    if (data / "corpus.json").exists():
        return TokenCorpus.load(data), data
    if not data.exists():
        raise ComposerError(f"{data}: no such file or folder")
    summary = tokenize_corpus([data], into, cache_dir=default_cache_dir())
    report(
        f"tokenized {summary.pieces} pieces from {data} ({summary.tokens:,} tokens, "
        f"{len(summary.skipped)} files skipped, {summary.cache_hits} from cache) into {into}"
    )
    return TokenCorpus.load(into), into


# How long one collective (a gradient all-reduce) may wait for the other workers. Every worker
# validates each epoch too, so they wait on each other only for the chief's checkpoint writes;
# a dead worker is noticed sooner by the strategy's health check (every 30 s).
COLLECTIVE_TIMEOUT_S = 600


def distribution_strategy(name: str):
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ComposerError("--strategy multiworker needs TF_CONFIG listing the machines")
        cluster_role(os.environ["TF_CONFIG"])  # a malformed TF_CONFIG is a one-line error
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=COLLECTIVE_TIMEOUT_S)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    return tf.distribute.get_strategy()  # names were checked by train_run


# Settings a resume takes from run.json; given again on the command line they must agree.
RESUMED_TRAIN = ("window", "batch", "learning_rate", "warmup_epochs", "decay", "transpose", "seed", "clip_norm", "weight_decay")
RESUMED_MODEL = ("units", "layers", "embedding", "dropout", "input_dropout", "embedding_dropout", "mixed_precision")


def cluster_role(tf_config: str) -> tuple[int, int, bool]:
    """(this task's index, number of tasks, is it the chief) from a TF_CONFIG text."""
    try:
        values = json.loads(tf_config)
        cluster, task = values["cluster"], values["task"]
        tasks = [(kind, i) for kind in ("chief", "worker") for i in range(len(cluster.get(kind, [])))]
        index = tasks.index((task["type"], int(task["index"])))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ComposerError(
            'TF_CONFIG must look like {"cluster": {"worker": ["host1:port", "host2:port"]}, '
            '"task": {"type": "worker", "index": 0}}'
        ) from None
    return index, len(tasks), chief_task(task["type"], int(task["index"]), cluster)


def train_as_worker(data: Path, run_dir: Path, config: TrainConfig, *args, resume: bool = False, **kwargs) -> TrainSummary:
    """A non-chief worker trains in a scratch folder that is removed at the end, so its --out
    stays untouched. To resume it needs the chief's run in --out (a shared folder or a copy)."""
    import shutil
    import tempfile

    index, count, _ = cluster_role(os.environ["TF_CONFIG"])
    scratch = Path(tempfile.mkdtemp(prefix=f"composer-worker-{index}-"))
    try:
        if resume:
            source = Run(run_dir)
            if not source.last.exists() or not source.config_path.exists():
                raise ComposerError(
                    f"worker {index}: --resume needs the chief's run in {run_dir} (a shared folder or a copy of it)"
                )
            shutil.rmtree(scratch)
            shutil.copytree(run_dir, scratch, ignore=shutil.ignore_patterns("epoch-*", "samples", "compare", "logs"))
        summary = train_run(data, scratch, config, *args, resume=resume, as_worker=True, **kwargs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary.run, summary.written = run_dir, []
    return summary


def train_run(
    data: Path | None,
    run_dir: Path,
    config: TrainConfig,
    preset: str = "small",
    model_overrides: dict | None = None,
    resume: bool = False,
    mixed_precision: bool = False,
    report: Callable[[str], None] = print,
    progress: Callable[[int, int], None] | None = None,
    given: dict | None = None,
    as_worker: bool = False,
) -> TrainSummary:
    """Train a new run, or (``resume``) continue one with every setting from its run.json.

    ``given`` holds the settings the user named explicitly (option name -> value): on resume,
    any that differs from the run's is refused in one line, as is another corpus.
    ``as_worker``: this process is a non-chief worker of a multi-worker run, training in a
    scratch folder (see ``train_as_worker``).
    """

    if config.strategy not in STRATEGIES:
        raise ComposerError(f"unknown strategy {config.strategy!r} (choose {', '.join(STRATEGIES)})")
    if config.decay not in DECAYS:
        raise ComposerError(f"unknown decay {config.decay!r} (choose {', '.join(DECAYS)})")
    if data is None and not resume:
        raise ComposerError("give the music or tokenized corpus to train on (DATA), or --resume an existing run")
    check_epochs(config)
    if config.strategy == "multiworker" and not as_worker and "TF_CONFIG" in os.environ:
        if not cluster_role(os.environ["TF_CONFIG"])[2]:
            return train_as_worker(
                data, run_dir, config, preset, model_overrides, resume=resume, mixed_precision=mixed_precision,
                report=report, progress=progress,
            )
    if not resume:
        # checked before the lock is taken: a folder of someone else's is left untouched, lock file included
        foreign = foreign_entries(Run(run_dir))
        if foreign:
            shown = ", ".join(foreign[:8]) + (f" and {len(foreign) - 8} more" if len(foreign) > 8 else "")
            raise ComposerError(
                f"--out {run_dir}: holds files composer train did not write ({shown}); choose a new or empty "
                "folder (nothing in it was changed)"
            )
    with FolderLock(run_dir, "training"):
        try:
            return _train_run(data, run_dir, config, preset, model_overrides or {}, resume, mixed_precision, report, progress, given or {}, as_worker)
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            run = Run(run_dir)
            raise ComposerError(
                f"{run_dir}: disk full ({error.filename or 'while writing'}); nothing was half-written, epoch "
                f"{run.last_epoch()} is complete; free some space and continue with "
                f"`composer train --out {run_dir} --resume --epochs {config.epochs}`"
            ) from None


def check_epochs(config: TrainConfig) -> None:
    """--epochs, --save-at and --save-every in one line each when they cannot mean anything."""
    if config.epochs < 1:
        raise ComposerError(f"--epochs {config.epochs}: train at least 1 epoch")
    wrong = [e for e in config.save_at if e < 1]
    if wrong:
        raise ComposerError(f"--save-at {','.join(map(str, wrong))}: epochs count from 1")
    if config.save_every < 0:
        raise ComposerError(f"--save-every {config.save_every}: give 0 (off) or a number of epochs")


def sensible_keeping(config: TrainConfig) -> tuple[TrainConfig, list[str]]:
    """The epochs kept as asked, except that a plan ending before every --save-at keeps its
    last epoch (else a short run keeps nothing to generate from or compare); with a line
    saying so, or naming the --save-at epochs the plan does not reach."""
    beyond = sorted(e for e in config.save_at if e > config.epochs)
    reached = any(e <= config.epochs for e in config.save_at) or 0 < config.save_every <= config.epochs
    if not reached:
        kept = replace(config, save_at=tuple(sorted({*config.save_at, config.epochs})))
        asked = f" (--save-at {','.join(map(str, beyond))})" if beyond else ""
        return kept, [f"keeping epoch {config.epochs}, the last: no epoch asked to be kept{asked} comes by --epochs {config.epochs}"]
    if beyond:
        return config, [f"--save-at {','.join(map(str, beyond))}: after the last epoch ({config.epochs}), so not kept in this session"]
    return config, []


# What `composer train` writes into a new run folder before run.json: its lock, the corpus it
# tokenizes music into and the n-gram yardstick (and their temporaries while being written)
EARLY_RUN_ENTRIES = (".lock", "corpus", "baseline.json")


def foreign_entries(run: Run) -> list[str]:
    """The names in a would-be run folder that `composer train` did not write: none in a run
    (a run.json it can read); else every entry, except what train writes before run.json
    when its lock file shows that train was there (a run killed before its first epoch)."""

    if not run.root.is_dir():
        return []
    names = sorted(p.name for p in run.root.iterdir())
    if run.config_path.name in names:
        try:
            run.config()
            return []
        except ComposerError:
            return names
    if ".lock" not in names:
        return names
    return [n for n in names if n not in EARLY_RUN_ENTRIES and not (n.startswith(".") and TEMPORARY_MARK in n)]


def _train_run(data, run_dir, config, preset, model_overrides, resume, mixed_precision, report, progress, given, as_worker) -> TrainSummary:
    run = Run(run_dir)
    summary = TrainSummary(run=run_dir)
    previous, done = checked_for_resume(run, resume)
    if previous is not None:
        corpus, corpus_dir = resumed_corpus(data, run, previous, report)
        refuse_changes(previous, given, preset)
    else:
        corpus, corpus_dir = load_corpus(data, run.corpus_dir, report)
    train, validation = corpus.split("train"), corpus.split("validation")
    if not train:
        raise ComposerError(f"{corpus_dir}: no training pieces")
    baseline = yardstick(run, train, validation, corpus.vocab, as_worker, summary)
    if baseline["best"]:
        summary.baseline_bits = baseline["best"]["bits_per_note"]
        report(f"n-gram baseline: {summary.baseline_bits:.3f} bits per note (n = {baseline['best']['order']})")

    import keras  # only now: every refusal above answers without TensorFlow's start-up

    if previous is not None:
        model_config, config, preset = previous.model_config(), resumed_train_config(previous, config, done), previous.preset
    else:
        model_config = ModelConfig.preset(preset, len(corpus.vocab), mixed_precision=mixed_precision, **model_overrides)
    if model_config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    keras.utils.set_random_seed(config.seed)
    strategy = distribution_strategy(config.strategy)
    with strategy.scope():
        if previous is not None:
            model = load_checkpoint(run.last, len(corpus.vocab), model_config, compile=True)
        else:
            model = build_model(model_config)
            compile_model(model, config)
    first_epoch = done + 1
    if first_epoch > config.epochs:
        report(f"{run_dir} has already trained {done} epochs; raise --epochs to continue")
        return summary
    config, notes = sensible_keeping(config)
    for note in notes:
        report(note)
    run_config = RunConfig(
        model=model_config.to_dict(),
        vocabulary=corpus.vocab.to_dict(),
        train=config.to_dict(),
        data=run_data(corpus, corpus_dir, str(data) if data is not None else previous.data.source),
        baseline=baseline["best"],
        preset=preset,
    )
    summary.written.append(write_text(run.config_path, run_config.to_json()))

    validation_notes = sum(p.notes for p in corpus.records("validation"))
    pitch_tokens = (corpus.vocab.pitch_offset, len(corpus.vocab.pitches))
    try:
        summary.epochs = fit(
            model, run, train, validation, validation_notes, config, first_epoch, pitch_tokens,
            epoch_reporter(config, summary.baseline_bits, report), progress, strategy,
        )
    except KeyboardInterrupt:
        summary.interrupted = True
        report(interrupted_line(run, config))
        if run.last_epoch() == 0:
            return summary
    summary.written += [run.history_path, run.last] + [r.saved for r in summary.epochs if r.saved]
    return summary


def checked_for_resume(run: Run, resume: bool) -> tuple[RunConfig | None, int]:
    """The run's recorded settings and last completed epoch when resuming (None, 0 for a new
    run), after every file the run recorded is checked and the leftovers of a killed writer are
    removed: nothing in a run is touched before it is known to be whole."""
    if not resume and run.last.exists():
        raise ComposerError(f"{run.root} already holds a run; add --resume to continue it or choose another --out")
    if not resume:
        return None, 0
    if not run.last.exists():
        raise ComposerError(f"{run.root}: nothing to resume (no checkpoints/last.keras)")
    previous = run.config()
    done = run.last_epoch()
    run.history()
    run.saved_epochs()
    remove_leftovers(run.checkpoints)
    remove_leftovers(run.root)
    return previous, done


def yardstick(run: Run, train: list, validation: list, vocab: Vocabulary, as_worker: bool, summary: TrainSummary) -> dict:
    """The n-gram baseline the run is measured against: computed once per run and kept in
    baseline.json (a resumed run reads it back)."""
    if run.baseline_path.exists():
        return json.loads(run.baseline_path.read_text())
    if as_worker:
        return {"scores": [], "best": None}  # the chief computes and reports the yardstick
    scores = baseline_scores(train, validation, vocab) if validation else []
    baseline = {"scores": [asdict(s) for s in scores], "best": asdict(best_baseline(scores)) if scores else None}
    summary.written.append(write_text(run.baseline_path, json.dumps(baseline, indent=1)))
    return baseline


def resumed_train_config(previous: RunConfig, session: TrainConfig, done: int) -> TrainConfig:
    """The run's own recipe, with what a session may change (epochs and what is kept, the
    strategy); more epochs add a stretch to the learning-rate schedule."""
    config = previous.train_config()
    config.save_at, config.save_every, config.strategy = session.save_at, session.save_every, session.strategy
    return config.extended_to(session.epochs, done) if session.epochs > done else replace(config, epochs=session.epochs)


def run_data(corpus, corpus_dir: Path, source: str) -> RunData:
    train, validation = corpus.split("train"), corpus.split("validation")
    return RunData(
        source=source,
        corpus=str(corpus_dir),
        corpus_hash=corpus.content_hash(),
        train_pieces=len(train),
        validation_pieces=len(validation),
        train_tokens=int(sum(len(p) for p in train)),
        validation_notes=sum(p.notes for p in corpus.records("validation")),
        median_bpm=float(np.median([p.tempo for p in corpus.pieces])),
        time_signature=_most_common([p.time_signature for p in corpus.pieces]),
        max_voices=corpus_voice_ceiling(corpus),
    )


def epoch_reporter(config: TrainConfig, baseline_bits: float | None, report: Callable[[str], None]) -> Callable[[EpochResult], None]:
    def announce(result: EpochResult) -> None:
        versus = f" (n-gram {baseline_bits:.3f})" if baseline_bits is not None else ""
        kept = f"  saved {result.saved}" if result.saved else ""
        report(
            f"epoch {result.epoch}/{config.epochs}  loss {result.loss:.4f}  "
            f"validation {result.val_bits_per_note:.3f} bits/note{versus}  {result.seconds:.1f} s{kept}"
        )

    return announce


def interrupted_line(run: Run, config: TrainConfig) -> str:
    done = run.last_epoch()
    if done == 0:
        return "interrupted in the first epoch: nothing to keep yet; start again with the same command"
    return (
        f"interrupted: epoch {done} is the last completed one, saved in {run.last}; continue with "
        f"`composer train --out {run.root} --epochs {config.epochs} --save-at {','.join(map(str, config.save_at))}"
        + (f" --save-every {config.save_every}" if config.save_every else "") + " --resume`"
    )


def resumed_corpus(data: Path | None, run: Run, previous, report: Callable[[str], None]):
    """The corpus a resumed run trains on: the one run.json names, or DATA if it is the same
    content; another corpus is refused before anything in the run is touched."""
    import tempfile


    if data is None:
        recorded = Path(previous.data.corpus)
        for folder in (recorded, run.corpus_dir):
            if (folder / "corpus.json").exists():
                corpus, corpus_dir = TokenCorpus.load(folder), folder
                break
        else:
            source = Path(previous.data.source)
            if not previous.data.source or not source.exists():
                raise ComposerError(f"{run.root}: its corpus {recorded} and source {source} are both missing; give DATA")
            corpus, corpus_dir = load_corpus(source, run.corpus_dir, report)
    else:
        with tempfile.TemporaryDirectory(prefix="composer-resume-") as scratch:
            corpus, corpus_dir = load_corpus(data, Path(scratch) / "corpus", report)
            if corpus_dir != data:  # music files: tokenized aside, so the run's corpus/ stays as it was
                corpus_dir = Path(previous.data.corpus)
    if _run_vocabulary(previous, run) != corpus.vocab:
        raise ComposerError(
            f"{data or corpus_dir}: its vocabulary ({len(corpus.vocab)} tokens) differs from the run's "
            f"({previous.vocabulary['size']} tokens); tokenize with the run's settings"
        )
    recorded_hash = previous.data.corpus_hash
    if recorded_hash and corpus.content_hash() != recorded_hash:
        raise ComposerError(
            f"{data or corpus_dir}: not the corpus this run was trained on (content hash {corpus.content_hash()[:12]} "
            f"vs {recorded_hash[:12]}); resume with the same corpus, or train a new run with another --out"
        )
    return corpus, corpus_dir


def refuse_changes(previous, given: dict, preset: str | None) -> None:
    """One line naming every explicitly given setting that differs from the run's."""
    differences = []
    for key in RESUMED_TRAIN:
        if key in given and given[key] != previous.train.get(key, getattr(TrainConfig(), key)):
            differences.append(f"--{key.replace('_', '-')} {given[key]} (run: {previous.train.get(key)})")
    for key in RESUMED_MODEL:
        if key in given and given[key] != previous.model.get(key):
            differences.append(f"--{key.replace('_', '-')} {given[key]} (run: {previous.model.get(key)})")
    if "preset" in given:
        recorded = previous.preset or _matching_preset(previous.model)
        if given["preset"] != recorded:
            differences.append(f"--preset {given['preset']} (run: {recorded or 'custom sizes'})")
    if differences:
        raise ComposerError(
            "--resume continues the run with its own settings; these differ: " + ", ".join(differences)
            + " (leave them out, or train a new run with another --out)"
        )


def _matching_preset(model: dict) -> str:

    for name, settings in PRESETS.items():
        if all(model.get(k) == settings[k] for k in SIZES):
            return name
    return ""


def _run_vocabulary(config, run: Run) -> Vocabulary:
    try:
        return config.vocab()
    except (KeyError, TypeError, ValueError) as error:
        raise ComposerError(f"{run.config_path}: damaged vocabulary ({error})") from None


def _most_common(values: list[str]) -> str:
    return max(set(values), key=values.count) if values else "4/4"

"""The run directory: every path of a training run is computed here and nowhere else.

    RUN/run.json                      model, vocabulary, data and training configuration
    RUN/history.csv                   one row per epoch
    RUN/baseline.json                 the n-gram yardstick on the run's corpus
    RUN/corpus/                       the tokenized corpus, when training started from MIDI files
    RUN/checkpoints/epoch-0100.keras  kept epochs
    RUN/checkpoints/last.keras        the last completed epoch, with optimizer state; the epoch is
                                      recorded inside the archive (composer.json), atomically with it
    RUN/checkpoints/last.json         which epoch last.keras holds, for people and older runs
    RUN/.lock                         held by the process training into the run
    RUN/logs/                         TensorBoard
    RUN/samples/epoch-0100/           generated MIDI
    RUN/compare/<stamp>/              comparison pages (one folder each; <stamp>-2 … for pages
                                      started in the same second)
    RUN/compare/.<stamp>.building-HOST-PID-TOKEN/
                                      a page being built by that process; removed by the next
                                      compare once the process is gone
"""

from __future__ import annotations

import csv
import json
import math
import re
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from composer import ComposerError
from composer.config import ModelConfig, TrainConfig, dataclass_problem, describe, metre_problem, within
from composer.tokens import TokenizerConfig, Vocabulary

HISTORY_FIELDS = ["epoch", "loss", "val_loss", "val_bits_per_note", "seconds"]
EPOCH_ENTRY = "composer.json"  # inside a .keras archive: the epoch its weights hold
EPOCH_ENTRY_BYTES = 4096  # {"epoch": N} is a few bytes; anything much larger is not one
RUN_JSON_BYTES = 1_000_000  # a run.json is a few kilobytes (its vocabulary's names the most)


@dataclass
class RunData:
    """What a run was trained on; defaults are what runs made before a field existed imply."""

    source: str = ""
    corpus: str = ""
    corpus_hash: str = ""  # dataset.TokenCorpus.content_hash: resume refuses another corpus
    train_pieces: int = field(default=0, metadata=within(0, 10**9))
    validation_pieces: int = field(default=0, metadata=within(0, 10**9))
    train_tokens: int = field(default=0, metadata=within(0, 10**12))
    validation_notes: int = field(default=0, metadata=within(0, 10**12))
    median_bpm: float = field(default=120.0, metadata=within(1, 1000))
    time_signature: str = field(default="4/4", metadata={"check": metre_problem})
    max_voices: int = field(default=0, metadata=within(0, 128))  # the corpus's voice ceiling (0: not recorded)


@dataclass
class RunConfig:
    """run.json: everything needed to load any checkpoint alone and to resume. Written and read
    only through this class (model and train hold ModelConfig and TrainConfig fields)."""

    model: dict
    vocabulary: dict
    train: dict
    data: RunData = field(default_factory=RunData)
    baseline: dict | None = None
    preset: str = ""  # "" in runs made before presets carried a recipe

    @staticmethod
    def from_dict(values: dict) -> "RunConfig":
        """A run.json's contents, every field checked first (``run_json_problem``)."""
        problem = run_json_problem(values)
        if problem:
            raise ValueError(problem)
        data = RunData(**values.get("data", {}))
        return RunConfig(values["model"], values["vocabulary"], values["train"], data, values.get("baseline"), values.get("preset", ""))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    def vocab(self) -> Vocabulary:
        return Vocabulary.from_dict(self.vocabulary)

    def model_config(self) -> ModelConfig:
        return ModelConfig(**self.model)

    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.train)


PRESET_NAMES = ("", "small", "full")  # "": runs made before presets carried a recipe


def run_json_problem(values) -> str | None:
    """The first field of a run.json that cannot be what it says, as "field: why" (None when all
    can): every section and field checked for type and range, the vocabulary against its own
    configuration and the model's size, the schedule for order, before anything is built."""
    if not isinstance(values, dict):
        return f"{describe(values)} is not an object"
    unknown = [key for key in values if key not in ("model", "vocabulary", "train", "data", "baseline", "preset")]
    missing = [key for key in ("model", "vocabulary", "train") if key not in values]
    if unknown or missing:
        return f"{str(unknown[0])[:40]}: unknown field" if unknown else f"{missing[0]}: missing"
    vocabulary = values["vocabulary"]
    problem = (
        dataclass_problem(ModelConfig, values["model"], "model")
        or dataclass_problem(TrainConfig, values["train"], "train")
        or dataclass_problem(RunData, values.get("data", {}), "data")
        or (None if isinstance(vocabulary, dict) else f"vocabulary: {describe(vocabulary)} is not an object")
        or dataclass_problem(TokenizerConfig, vocabulary.get("config"), "vocabulary.config")
        or baseline_problem(values.get("baseline"))
        or (None if values.get("preset", "") in PRESET_NAMES else f"preset: {describe(values['preset'])} is not one of small, full")
    )
    if problem:
        return problem
    try:
        vocab = Vocabulary.from_dict(vocabulary)
    except (ValueError, TypeError, KeyError) as error:
        return f"vocabulary: {str(error)[:100]}"
    tokenizer = vocab.config
    if tokenizer.pitch_low > tokenizer.pitch_high or not vocab.grid:
        return "vocabulary.config: no pitches or no durations"
    if tokenizer.problem():
        return f"vocabulary.config: {tokenizer.problem()}"
    if values["model"]["vocab_size"] != len(vocab):
        return f"model.vocab_size: {values['model']['vocab_size']} but the vocabulary holds {len(vocab)} tokens"
    schedule = TrainConfig.from_dict(values["train"]).schedule_problem()
    return f"train.schedule: {schedule}" if schedule else None


def baseline_problem(baseline) -> str | None:
    """The n-gram yardstick's record: absent, or an object of finite numbers."""
    if baseline is None:
        return None
    if not isinstance(baseline, dict) or len(baseline) > 16:
        return f"baseline: {describe(baseline)} is not an object of a few numbers"
    for key, value in baseline.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"baseline.{str(key)[:40]}: {describe(value)} is not a finite number"
    return None


@dataclass(frozen=True)
class Run:
    root: Path
    # (label, file) pairs already resolved (``pinned``): asked for again, they give the same
    # file, so a command that resolves its epochs once never resolves a label a second time
    pins: tuple[tuple[str, Path], ...] = ()

    @property
    def name(self) -> str:
        return self.root.resolve().name

    @property
    def config_path(self) -> Path:
        return self.root / "run.json"

    @property
    def history_path(self) -> Path:
        return self.root / "history.csv"

    @property
    def baseline_path(self) -> Path:
        return self.root / "baseline.json"

    @property
    def corpus_dir(self) -> Path:
        return self.root / "corpus"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch-{epoch:04d}.keras"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.keras"

    @property
    def last_state(self) -> Path:
        return self.checkpoints / "last.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def samples(self, label: str) -> Path:
        return self.root / "samples" / label

    @property
    def comparisons(self) -> Path:
        """Holds one folder per comparison, named by its time stamp."""
        return self.root / "compare"

    # ---- reading --------------------------------------------------------------------

    def config(self) -> RunConfig:
        if self.root.exists() and not self.root.is_dir():
            raise ComposerError(f"{self.root}: is a file, not a run directory")
        if not self.config_path.exists():
            raise ComposerError(f"{self.root}: not a training run (no run.json)")
        try:
            if self.config_path.stat().st_size > RUN_JSON_BYTES:
                raise ValueError(f"over {RUN_JSON_BYTES:,} bytes")
            return RunConfig.from_dict(json.loads(self.config_path.read_text()))
        except RecursionError:
            raise ComposerError(f"{self.config_path}: damaged (nested too deeply)") from None
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ComposerError(f"{self.config_path}: damaged ({str(error)[:200]})") from None

    def planned_epochs(self) -> int | None:
        """The last epoch run.json plans (None without a run.json, or if it names none)."""
        if not self.config_path.exists():
            return None
        planned = self.config().train.get("epochs")
        return planned if isinstance(planned, int) and not isinstance(planned, bool) and planned >= 0 else None

    def saved_epochs(self) -> dict[int, Path]:
        planned = self.planned_epochs()
        found = {}
        for path in sorted(self.checkpoints.glob("epoch-*.keras")):
            match = re.fullmatch(r"epoch-(\d+)\.keras", path.name)
            if match:
                found[checked_epoch(int(match.group(1)), path, planned)] = path
        return found

    def last_epoch(self) -> int:
        """The epoch last.keras holds: recorded inside the archive (written with the weights),
        else, for runs made before, in last.json; 0 when neither says."""
        planned = self.planned_epochs()
        recorded = checkpoint_epoch(self.last, planned)
        if recorded is not None:
            return recorded
        if not self.last_state.exists():
            return 0
        try:
            value = json.loads(self.last_state.read_text())["epoch"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ComposerError(f"{self.last_state}: damaged ({type(error).__name__}: {str(error)[:100]})") from None
        return checked_epoch(value, self.last_state, planned)

    def resolve(self, epoch: str) -> tuple[str, Path]:
        """'150' or 'last' → (label such as 'epoch-0150', checkpoint file)."""
        number, path = self.checkpoint_of(epoch)
        return epoch_label(number), path

    def checkpoint_of(self, epoch: str) -> tuple[int, Path]:
        """'150' or 'last' → (epoch, file). 'last' is the last completed epoch (last.keras; in
        a run copied without it, the highest kept epoch); a number is a kept epoch, or the last
        completed one where that was not kept (after a resume or Ctrl-C)."""
        pins = dict(self.pins)
        if epoch.isdigit() and epoch_label(int(epoch)) in pins:
            return int(epoch), pins[epoch_label(int(epoch))]
        saved = self.saved_epochs()
        last = self.last_epoch() if self.last.exists() else None
        if epoch == "last" and last is not None:
            return last, self.last
        if epoch == "last" and saved:
            return max(saved), saved[max(saved)]
        if epoch.isdigit() and int(epoch) in saved:
            return int(epoch), saved[int(epoch)]
        if epoch.isdigit() and int(epoch) == last:
            return last, self.last
        if epoch == "last":
            raise ComposerError(f"{self.root}: no checkpoint yet")
        raise ComposerError(f"{self.root}: no checkpoint for epoch {epoch} (available: {available(saved, last)})")

    def resolve_many(self, epochs: str) -> list[tuple[str, Path]]:
        """'100,150', 'all' (every kept epoch and the last completed one) or 'last' →
        checkpoints in epoch order, each once."""
        if epochs == "all":
            found = dict(self.saved_epochs())
            if self.last.exists():
                found.setdefault(*self.checkpoint_of("last"))
            if not found:
                raise ComposerError(f"{self.root}: no checkpoints yet")
        else:
            found = {}
            for text in (e.strip() for e in epochs.split(",")):
                if text:
                    found.setdefault(*self.checkpoint_of(text))
        return [(epoch_label(number), found[number]) for number in sorted(found)]

    def pinned(self, checkpoints: list[tuple[str, Path]]) -> "Run":
        """This run with these resolved checkpoints fixed (see ``pins``)."""
        return Run(self.root, tuple(checkpoints))

    def check_still_holds(self, label: str, path: Path) -> None:
        """After ``path`` was loaded as ``label``: refuse if it was last.keras and the run has
        trained on meanwhile, so samples never carry another epoch's label."""
        now = self.last_epoch() if path == self.last else None
        if now is not None and epoch_label(now) != label:
            raise ComposerError(
                f"{path}: the run trained on to epoch {now} while it was being read as {label}; "
                "run the command again, or name a kept epoch"
            )

    def history(self) -> list[dict]:
        if not self.history_path.exists():
            return []
        planned = self.planned_epochs()
        try:
            with open(self.history_path, newline="") as f:
                rows = list(csv.DictReader(f))
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise ComposerError(f"{self.history_path}: damaged ({type(error).__name__}: {str(error)[:100]})") from None
        return [history_row(row, f"{self.history_path}, line {number}", planned) for number, row in enumerate(rows, start=2)]


def epoch_label(epoch: int) -> str:
    return f"epoch-{epoch:04d}"


def available(saved: dict[int, Path], last: int | None) -> str:
    """The epochs a run can give, for an error message: kept ones, the last completed one."""
    epochs = [str(e) for e in saved] + ([str(last)] if last is not None and last not in saved else [])
    return ", ".join(epochs + ["last"]) if epochs else "none yet"


def checked_epoch(value, source, planned: int | None) -> int:
    """An epoch read from a file: a whole number from 0 to the run's planned epochs, else a
    one-line error naming the file (a negative or infinite epoch would make a resume train
    the wrong epochs and replace kept checkpoints)."""
    whole = (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and value.is_integer())
    if not (whole and 0 <= value <= (math.inf if planned is None else planned)):
        bound = f"0 to {planned} (the epochs run.json plans)" if planned is not None else "0 up"
        raise ComposerError(f"{source}: epoch {value!r} is not a whole number from {bound}; the file is damaged or was edited")
    return int(value)


def history_row(row: dict, source: str, planned: int | None) -> dict:
    """One row of history.csv as numbers, its epoch checked (``checked_epoch``)."""
    values = {}
    for key, text in row.items():
        try:
            values[key] = float(text)
        except (TypeError, ValueError):
            raise ComposerError(f"{source}: {key} {text!r} is not a number") from None
    values["epoch"] = checked_epoch(values.get("epoch"), source, planned)
    return values


def checkpoint_epoch(path: Path, planned: int | None = None) -> int | None:
    """The epoch recorded inside a .keras archive (``checked_epoch``); None if the archive
    cannot be read or records none (runs made before it did)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if EPOCH_ENTRY not in archive.namelist():
                return None
            with archive.open(EPOCH_ENTRY) as member:
                entry = member.read(EPOCH_ENTRY_BYTES + 1)  # never a huge entry into memory
    except (OSError, zipfile.BadZipFile):
        return None
    if len(entry) > EPOCH_ENTRY_BYTES:
        raise ComposerError(f"{path}: damaged {EPOCH_ENTRY} (over {EPOCH_ENTRY_BYTES} bytes)")
    try:
        value = json.loads(entry)["epoch"]
    except (ValueError, KeyError, TypeError, RecursionError) as error:  # 4 kB of "[" nests too deep to parse
        raise ComposerError(f"{path}: damaged {EPOCH_ENTRY} ({type(error).__name__})") from None
    return checked_epoch(value, path, planned)

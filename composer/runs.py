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
    RUN/compare/<stamp>/              comparison pages (one folder each)
"""

from __future__ import annotations

import csv
import json
import re
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from composer import ComposerError

HISTORY_FIELDS = ["epoch", "loss", "val_loss", "val_bits_per_note", "seconds"]
EPOCH_ENTRY = "composer.json"  # inside a .keras archive: the epoch its weights hold


@dataclass
class RunData:
    """What a run was trained on; defaults are what runs made before a field existed imply."""

    source: str = ""
    corpus: str = ""
    corpus_hash: str = ""  # dataset.TokenCorpus.content_hash: resume refuses another corpus
    train_pieces: int = 0
    validation_pieces: int = 0
    train_tokens: int = 0
    validation_notes: int = 0
    median_bpm: float = 120.0
    time_signature: str = "4/4"
    max_voices: int = 0  # the corpus's voice ceiling (0: not recorded)


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
        known = {f.name for f in fields(RunData)}
        data = RunData(**{k: v for k, v in (values.get("data") or {}).items() if k in known})
        return RunConfig(values["model"], values["vocabulary"], values["train"], data, values.get("baseline"), values.get("preset", ""))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    def vocab(self):
        from composer.tokens import Vocabulary

        return Vocabulary.from_dict(self.vocabulary)

    def model_config(self):
        from composer.model import ModelConfig

        return ModelConfig(**self.model)

    def train_config(self):
        from composer.train import TrainConfig

        return TrainConfig.from_dict(self.train)


@dataclass(frozen=True)
class Run:
    root: Path

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
            return RunConfig.from_dict(json.loads(self.config_path.read_text()))
        except (ValueError, KeyError, TypeError) as error:
            raise ComposerError(f"{self.config_path}: damaged ({error})") from None

    def saved_epochs(self) -> dict[int, Path]:
        found = {}
        for path in sorted(self.checkpoints.glob("epoch-*.keras")):
            match = re.fullmatch(r"epoch-(\d+)\.keras", path.name)
            if match:
                found[int(match.group(1))] = path
        return found

    def last_epoch(self) -> int:
        """The epoch last.keras holds: recorded inside the archive (written with the weights),
        else, for runs made before, in last.json."""
        recorded = checkpoint_epoch(self.last)
        if recorded is not None:
            return recorded
        if not self.last_state.exists():
            return 0
        return int(json.loads(self.last_state.read_text())["epoch"])

    def resolve(self, epoch: str) -> tuple[str, Path]:
        """'150' or 'last' → (label such as 'epoch-0150', checkpoint path)."""
        saved = self.saved_epochs()
        if epoch == "last":
            if not self.last.exists():
                raise ComposerError(f"{self.root}: no checkpoint yet")
            return f"epoch-{self.last_epoch():04d}", self.last
        if not epoch.isdigit() or int(epoch) not in saved:
            available = ", ".join(str(e) for e in saved) or "none"
            raise ComposerError(f"{self.root}: no checkpoint for epoch {epoch} (available: {available}, last)")
        return f"epoch-{int(epoch):04d}", saved[int(epoch)]

    def resolve_many(self, epochs: str) -> list[tuple[str, Path]]:
        """'100,150', 'all' or 'last' → checkpoints in epoch order."""
        if epochs == "all":
            saved = self.saved_epochs()
            if not saved:
                raise ComposerError(f"{self.root}: no saved epochs")
            return [(f"epoch-{e:04d}", p) for e, p in sorted(saved.items())]
        return [self.resolve(e.strip()) for e in epochs.split(",") if e.strip()]

    def history(self) -> list[dict]:
        if not self.history_path.exists():
            return []
        with open(self.history_path, newline="") as f:
            return [{k: float(v) if k != "epoch" else int(v) for k, v in row.items()} for row in csv.DictReader(f)]


def checkpoint_epoch(path: Path) -> int | None:
    """The epoch recorded inside a .keras archive, if any."""
    try:
        with zipfile.ZipFile(path) as archive:
            return int(json.loads(archive.read(EPOCH_ENTRY))["epoch"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None

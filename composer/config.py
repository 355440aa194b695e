"""Every setting of composer, and its default, said once: the model (``ModelConfig``, ``PRESETS``),
the training recipe (``TrainConfig``, ``RECIPES``), the corpus limits (``Limits``), sampling
(``SampleSettings``) and the comparison page (``CompareSettings``). The command line reads its
option defaults from here; run.json is written and read through ``runs.RunConfig``.

Each field's range is declared beside the field, once.

A dataclass field says what it may hold with ``metadata=within(low, high)`` (or ``choices``);
``dataclass_problem`` checks a dict read from a file (run.json) against the dataclass before
anything is built from it, so a tampered or damaged file is one line naming the field, never a
traceback, a loop of 10⁹ layers or a grid of 40 GB. ``check_option`` does the same for a
command-line value, with a ceiling a user can lift (``--no-ceiling``) where a big value is
legitimate but slow.
"""

from __future__ import annotations

import math
import os
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

from composer import ComposerError

LONGEST_TEXT = 4096  # characters in any string field of run.json (names, paths, hashes)
LONGEST_LIST = 100_000  # items in any list field (kept epochs, schedule stretches)


def within(low: float, high: float) -> dict:
    return {"within": (low, high)}


def choices(*names: str) -> dict:
    return {"choices": names}


def metre_problem(text: str) -> str | None:
    """Why ``text`` is not a metre such as 3/4 or 6/8: a positive numerator over a power-of-two
    denominator (None when it is)."""
    parts = text.split("/")
    if len(parts) != 2 or not all(p.isdigit() and len(p) <= 3 for p in parts) or int(parts[0]) < 1 or int(parts[1]) not in (1, 2, 4, 8, 16, 32):
        return f"{describe(text)} is not a metre such as 4/4, 3/4 or 6/8"
    return None


def describe(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def value_problem(value, hint, metadata) -> str | None:
    """Why ``value`` is not of type ``hint`` within the field's declared range (None if it is)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return f"{describe(value)} is not a list"
        if len(value) > LONGEST_LIST:
            return f"holds {len(value):,} items (at most {LONGEST_LIST:,})"
        if len(args) == 2 and args[1] is Ellipsis:
            items = [(item, args[0]) for item in value]
        elif len(value) != len(args):
            return f"{describe(value)} is not a list of {len(args)}"
        else:
            items = list(zip(value, args))
        for item, item_hint in items:
            problem = value_problem(item, item_hint, metadata)
            if problem:
                return f"item {problem}"
        return None
    if hint is bool:
        return None if isinstance(value, bool) else f"{describe(value)} is not true or false"
    if hint is str:
        if not isinstance(value, str):
            return f"{describe(value)} is not text"
        if len(value) > LONGEST_TEXT:
            return f"text of {len(value):,} characters (at most {LONGEST_TEXT:,})"
        allowed, check = metadata.get("choices"), metadata.get("check")
        if allowed and value not in allowed:
            return f"{describe(value)} is not one of {', '.join(map(repr, allowed))}"
        return check(value) if check else None
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        return f"{describe(value)} is not a whole number"
    if hint is float and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
        return f"{describe(value)} is not a finite number"
    if hint in (int, float) and "within" in metadata:
        low, high = metadata["within"]
        if not low <= value <= high:
            return f"{describe(value)} is not from {low:g} to {high:g}"
    return None


def dataclass_problem(cls, values, where: str) -> str | None:
    """The first field of ``values`` (a dict read from a file) that ``cls`` cannot hold, as
    "where.field: why"; unknown and missing required fields included. None when all is well."""
    if not isinstance(values, dict):
        return f"{where}: {describe(values)} is not an object"
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = [key for key in values if key not in known]
    if unknown:
        return f"{where}.{str(unknown[0])[:40]}: unknown field"
    for name, f in known.items():
        if name not in values:
            if f.default is MISSING and f.default_factory is MISSING:
                return f"{where}.{name}: missing"
            continue
        problem = value_problem(values[name], hints[name], f.metadata)
        if problem:
            return f"{where}.{name}: {problem}"
    return None


def check_option(option: str, value: float | None, low: float, high: float, ceiling: float | None = None,
                 lifted: bool = False, unit: str = "") -> None:
    """A command-line number: finite and from ``low`` to ``high``; above ``ceiling`` only when
    the user lifts it (a long run asked for on purpose, not by a typo of three zeros)."""
    if value is None:
        return
    if not math.isfinite(value) or not low <= value <= high:
        raise ComposerError(f"{option} {value:g}: give a number from {low:g} to {high:g}{unit}")
    if ceiling is not None and value > ceiling and not lifted:
        raise ComposerError(f"{option} {value:g}: above the ceiling of {ceiling:g}{unit}; add --no-ceiling to go ahead")


# ---- the model and its training: each preset's sizes and recipe, every default ---------------------

# Sizes and regularizers per preset. The small one's regularizers come from the 150-epoch runs of
# the regularization sweep (README, "Regularization"): 0.2 alone over-fitted (a gap of 1.07 bits
# between eval-mode training and validation), 0.5 / 0.2 / 0.1 under-fitted; 0.35 / 0.1 / 0.05 won.
PRESETS: dict[str, dict[str, float]] = {
    "small": {"embedding": 128, "units": 256, "layers": 2, "dropout": 0.35, "input_dropout": 0.1, "embedding_dropout": 0.05},
    "full": {"embedding": 256, "units": 512, "layers": 3},  # the size of the classic references; untested here
}
SIZES = ("embedding", "units", "layers")  # what names a preset in runs that predate recording it


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = field(metadata=within(4, 100_000))
    embedding: int = field(default=128, metadata=within(1, 8192))
    units: int = field(default=256, metadata=within(1, 8192))
    layers: int = field(default=2, metadata=within(1, 16))
    dropout: float = field(default=0.2, metadata=within(0, 0.95))  # between layers and before the logits
    # each LSTM's ``dropout=``: its input, one mask for the whole window
    input_dropout: float = field(default=0.0, metadata=within(0, 0.95))
    # whole token vectors dropped (the model must guess from context)
    embedding_dropout: float = field(default=0.0, metadata=within(0, 0.95))
    mixed_precision: bool = False

    @staticmethod
    def preset(name: str, vocab_size: int, **overrides) -> "ModelConfig":
        if name not in PRESETS:
            raise ComposerError(f"unknown preset {name!r} (choose {', '.join(PRESETS)})")
        values = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
        return ModelConfig(vocab_size=vocab_size, **values)

    def to_dict(self) -> dict:
        return asdict(self)


STRATEGIES = ("default", "mirrored", "multiworker")


# The training recipe of each preset, found by benchmarks/recipe_sweep.py on the bundled
# chorales (its table is in the README). Model sizes are PRESETS above.
RECIPES: dict[str, dict] = {
    # 4x the updates per epoch of the 256 x 32 windows it replaces, at twice the learning rate
    "small": {"window": 64, "batch": 32, "learning_rate": 4e-3, "warmup_epochs": 2, "decay": "cosine"},
    # untested by the sweep (a GPU preset): the larger model gets the small one's window and a
    # more usual Adam rate for its size, and batches twice as large, which a GPU runs for free
    "full": {"window": 64, "batch": 64, "learning_rate": 2e-3, "warmup_epochs": 2, "decay": "cosine"},
}
DECAYS = ("cosine", "constant")
MOST_EPOCHS = 1_000_000


@dataclass
class TrainConfig:
    """Every setting of a training run; the defaults are those of runs made before recipes
    (constant learning rate), so an old run.json still loads and resumes as it trained."""

    epochs: int = field(default=150, metadata=within(1, MOST_EPOCHS))
    save_at: tuple[int, ...] = field(default=(100, 150), metadata=within(1, MOST_EPOCHS))
    save_every: int = field(default=0, metadata=within(0, MOST_EPOCHS))
    window: int = field(default=256, metadata=within(1, 1_000_000))
    batch: int = field(default=32, metadata=within(1, 1_000_000))
    learning_rate: float = field(default=1e-3, metadata=within(1e-12, 10))  # the peak, after warm-up
    warmup_epochs: int = field(default=0, metadata=within(0, MOST_EPOCHS))
    decay: str = field(default="constant", metadata=choices(*DECAYS))
    # the learning rate at the last epoch, as a share of the peak
    final_lr_fraction: float = field(default=0.05, metadata=within(0, 1))
    clip_norm: float = field(default=1.0, metadata=within(1e-12, 1e9))
    # decoupled (AdamW) when above 0; biases are not decayed
    weight_decay: float = field(default=0.0, metadata=within(0, 1))
    transpose: int = field(default=5, metadata=within(0, 24))
    seed: int = field(default=0, metadata=within(0, 2**32 - 1))
    strategy: str = field(default="default", metadata=choices(*STRATEGIES))
    # (first epoch - 1, last epoch) of each stretch the schedule was planned for: one entry for a
    # run trained in one go, one more for each --resume that changed --epochs
    schedule: tuple[tuple[int, int], ...] = field(default=(), metadata=within(0, MOST_EPOCHS))

    @staticmethod
    def preset(name: str, **overrides) -> "TrainConfig":
        if name not in RECIPES:
            raise ComposerError(f"unknown preset {name!r} (choose {', '.join(RECIPES)})")
        return TrainConfig(**{**RECIPES[name], **{k: v for k, v in overrides.items() if v is not None}})

    @staticmethod
    def from_dict(values: dict) -> "TrainConfig":
        known = {k: v for k, v in values.items() if k in TrainConfig.__dataclass_fields__}
        config = TrainConfig(**known)
        config.save_at = tuple(config.save_at)
        config.schedule = tuple(tuple(stretch) for stretch in config.schedule)
        return config

    def to_dict(self) -> dict:
        values = asdict(self)
        values["save_at"] = list(self.save_at)
        values["schedule"] = [list(stretch) for stretch in self.planned()]
        return values

    def schedule_problem(self) -> str | None:
        """Why the stretches cannot be a plan (None when they can): the first starts at 0, each
        ends after it starts, and each later one starts within the one before (a resume)."""
        previous = (0, 0)
        for index, (start, end) in enumerate(self.schedule):
            if not (previous[0] <= start <= previous[1] and start < end) or (index == 0 and start != 0):
                return f"stretch {index + 1} ({start}, {end}) does not follow the one before"
            previous = (start, end)
        return None

    def planned(self) -> tuple[tuple[int, int], ...]:
        return self.schedule or ((0, self.epochs),)

    def extended_to(self, epochs: int, done: int) -> "TrainConfig":
        """This run continued after epoch ``done`` up to ``epochs``: a new stretch of the
        schedule starts where the learning rate is now, so the run ends at its low point again."""
        plan = self.planned()
        if epochs != plan[-1][1]:
            plan = plan + ((done, epochs),)
        return replace(self, epochs=epochs, schedule=plan)

    def keeps(self, epoch: int) -> bool:
        return epoch in self.save_at or (self.save_every > 0 and epoch % self.save_every == 0)


# ---- the corpus: what one file and one piece may hold ----------------------------------------

DEFAULT_MAX_BYTES = 10_000_000
# 10,000 quarters are 2,500 bars of 4/4, 83 minutes at 120 bpm: more than any single movement
# (Beethoven's ninth, finale: about 3,500), so only broken or fuzzed timing reaches it
DEFAULT_MAX_QUARTERS = 10_000.0
# 100,000 tokens are about 40,000 notes at 2.4 tokens per note: a long, dense piano piece fits;
# a chorale takes about 500. Training windows are a few hundred tokens, so a longer "piece"
# would outweigh thousands of real ones
DEFAULT_MAX_TOKENS = 100_000
# silences longer than 4 bars of 4/4 shrink to 4 bars: no piece rests that long mid-way, while
# broken delta times (0x0FFFFFFF ticks) would otherwise become millions of TimeShift tokens
DEFAULT_MAX_SILENCE = 16.0
VALIDATION_SHARE = 0.1  # of the pieces, held out (whole pieces, never windows of them)


@dataclass(frozen=True)
class Limits:
    """Bounds on one file and one piece, by musical sense (never by memory use)."""

    max_bytes: int = DEFAULT_MAX_BYTES  # on disk, and decompressed for .mxl
    max_quarters: float = DEFAULT_MAX_QUARTERS  # last onset, after long silences are shrunk
    max_tokens: int = DEFAULT_MAX_TOKENS  # per piece, checked after encoding
    max_silence: float = DEFAULT_MAX_SILENCE  # quarters of silence kept at most


def default_cache_dir() -> Path:
    """Where tokenized files and computed bits per note are kept between runs (per user)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "composer"


# ---- sampling and the comparison page --------------------------------------------------------

PRIMER_BARS = 2.0  # bars of a primer's opening continued by generate and by compare


@dataclass
class SampleSettings:
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    seed: int = 0
    tokens: int | None = None
    steps: int | None = None
    cap: int = 4096  # tokens, when neither ``tokens`` nor ``steps`` bounds a sample
    max_voices: int | None = None  # None: the run's voice ceiling; 0: no limit
    max_rest: int | None = None  # in a span: the longest silence, in steps (None: any)

    def describe(self) -> str:
        return f"seed{self.seed}_temp{self.temperature:g}_topk{self.top_k}_topp{self.top_p:g}"


@dataclass
class CompareSettings:
    num: int = 4  # openings shown on the page, with audio
    bars: float = 16
    primer: Path | None = None
    primer_bars: float = PRIMER_BARS
    # the page samples as generate does, from the same defaults
    temperature: float = SampleSettings.temperature
    top_k: int = SampleSettings.top_k
    top_p: float = SampleSettings.top_p
    seed: int = SampleSettings.seed
    soundfont: Path | None = None
    samples: int = 32  # continuations measured per checkpoint (the shown ones among them)
    max_voices: int | None = SampleSettings.max_voices
    no_ceiling: bool = False  # allow more samples and bars than a page is usually made of
    cache: Path | None = field(default_factory=default_cache_dir)  # where bits per note are kept (compare.cached_bits); None: nowhere

    def sampling(self) -> SampleSettings:
        return SampleSettings(self.temperature, self.top_k, self.top_p, self.seed, max_voices=self.max_voices)

"""The model: a stacked LSTM over tokens (training graph) and a stateful one-step sampler sharing its weights.

Embedding (→ token dropout) → N × LSTM(return_sequences=True) with dropout *between* layers
→ Dense logits. The LSTMs keep Keras's default activations and no ``recurrent_dropout``, which
are the conditions for the fused cuDNN kernel on a GPU (``recurrent_dropout`` silently disables
it). Their ``dropout=`` (``input_dropout``: one mask on each layer's input, the same at every
step) keeps the kernel: Keras applies it to the inputs before the fused call.

For generation, ``LSTMStepper`` runs one token at a time in NumPy with the trained weights,
carrying (h, c) for every layer and every sample of a batch. A Python-side step avoids
TensorFlow's per-call overhead (about a millisecond), which dominates when the work per
token is a few small matrix products; tests check that it reproduces the Keras logits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from composer import ComposerError
from composer.config import within

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


def build_model(config: ModelConfig):
    """The training graph: token ids (batch, time) → logits (batch, time, vocab)."""
    import keras

    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(config.vocab_size, config.embedding, name="embedding")(tokens)
    if config.embedding_dropout > 0:
        # one draw per token, shared by its whole vector: a token is dropped, not its features
        x = keras.layers.Dropout(config.embedding_dropout, noise_shape=(None, None, 1), name="embedding_dropout")(x)
    for i in range(config.layers):
        x = keras.layers.LSTM(config.units, return_sequences=True, dropout=config.input_dropout, name=f"lstm_{i}")(x)
        x = keras.layers.Dropout(config.dropout, name=f"dropout_{i}")(x)
    logits = keras.layers.Dense(config.vocab_size, dtype="float32", name="logits")(x)
    return keras.Model(tokens, logits, name="composer_lstm")


def cudnn_compatible(layer) -> bool:
    """Keras uses the fused cuDNN kernel only for LSTMs with these settings."""
    return (
        layer.activation.__name__ == "tanh"
        and layer.recurrent_activation.__name__ == "sigmoid"
        and layer.recurrent_dropout == 0
        and not layer.unroll
        and layer.use_bias
    )


def checkpoint_problem(path: Path, expected: ModelConfig | None = None) -> str | None:
    """Why a .keras file is not a checkpoint of this architecture, read from the archive alone
    (no TensorFlow): damaged or truncated, or layers other than run.json describes. None if fine."""
    import json
    import zipfile

    if not path.is_file():
        return "no such checkpoint"
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
            if damaged is not None:
                return f"damaged archive ({damaged} fails its checksum)"
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        return f"not a loadable checkpoint ({str(error).splitlines()[0][:120] if str(error) else type(error).__name__})"
    if expected is None:
        return None
    layers = {layer.get("config", {}).get("name"): layer for layer in config.get("config", {}).get("layers", [])}
    wanted = {"embedding": ("Embedding", "output_dim", expected.embedding), "logits": ("Dense", "units", expected.vocab_size)}
    wanted.update({f"lstm_{i}": ("LSTM", "units", expected.units) for i in range(expected.layers)})
    for name, (kind, key, size) in wanted.items():
        layer = layers.get(name)
        if layer is None:
            return f"has no layer {name!r}; run.json describes {expected.layers} x {expected.units} LSTM layers"
        if layer.get("class_name") != kind:
            return f"layer {name!r} is a {layer.get('class_name')}, not an {kind}"
        if layer["config"].get(key) != size:
            if name == "logits":
                return f"checkpoint predicts {layer['config'].get(key)} tokens but the run's vocabulary has {size}"
            return f"layer {name!r} has {key} {layer['config'].get(key)} but run.json says {size}"
    extra = sorted(n for n in layers if n and n.startswith("lstm_") and n not in wanted)
    if extra:
        return f"has more LSTM layers ({', '.join(extra)}) than the {expected.layers} run.json describes"
    return None


def load_checkpoint(path: Path, vocab_size: int | None = None, expected: ModelConfig | None = None, compile: bool = False):
    """Load a .keras checkpoint in safe mode (it can run no code); errors are one line.

    With ``expected`` (run.json's model), a checkpoint of another architecture is refused.
    ``compile=True`` restores the optimizer and its state too (for resuming).
    """
    import keras

    if not path.exists():
        raise ComposerError(f"{path}: no such checkpoint")
    problem = checkpoint_problem(path, expected)
    if problem:
        raise ComposerError(f"{path}: {problem}")
    try:
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as error:
        if "safe_mode" in str(error):
            raise ComposerError(f"{path}: refused, it contains Python code such as a Lambda layer (checkpoints load in safe mode)") from None
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ComposerError(f"{path}: not a loadable checkpoint ({reason[:200]})") from None
    outputs = model.output_shape[-1]
    if vocab_size is not None and outputs != vocab_size:
        raise ComposerError(f"{path}: checkpoint predicts {outputs} tokens but the run's vocabulary has {vocab_size}")
    return model


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # overflow-free form of 1 / (1 + exp(-x))


class LSTMStepper:
    """One-token-at-a-time inference with the weights of a model from ``build_model``."""

    def __init__(self, model):
        self.embedding = np.asarray(model.get_layer("embedding").embeddings, dtype=np.float32)
        self.cells = []
        i = 0
        while True:
            try:
                layer = model.get_layer(f"lstm_{i}")
            except ValueError:
                break
            kernel, recurrent, bias = (np.asarray(w, dtype=np.float32) for w in layer.get_weights())
            # one matrix for input and state: [x, h] @ [[W], [U]] saves a product per step
            self.cells.append((np.concatenate([kernel, recurrent]), bias))
            i += 1
        dense = model.get_layer("logits")
        self.dense_w, self.dense_b = (np.asarray(w, dtype=np.float32) for w in dense.get_weights())
        self.units = self.cells[0][1].shape[0] // 4

    def initial_state(self, batch: int) -> list[tuple[np.ndarray, np.ndarray]]:
        zeros = np.zeros((batch, self.units), dtype=np.float32)
        return [(zeros, zeros) for _ in self.cells]

    def step(self, tokens: np.ndarray, state: list[tuple[np.ndarray, np.ndarray]]):
        """tokens (batch,) → logits (batch, vocab) and the new state."""
        x = self.embedding[tokens]
        new_state = []
        u = self.units
        for (weights, bias), (h, c) in zip(self.cells, state):
            z = np.concatenate([x, h], axis=1) @ weights + bias
            i, f = _sigmoid(z[:, :u]), _sigmoid(z[:, u : 2 * u])
            g, o = np.tanh(z[:, 2 * u : 3 * u]), _sigmoid(z[:, 3 * u :])
            c = f * c + i * g
            h = o * np.tanh(c)
            new_state.append((h, c))
            x = h
        return x @ self.dense_w + self.dense_b, new_state

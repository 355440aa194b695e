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

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from composer import ComposerError
from composer.config import ModelConfig
from composer.runs import EPOCH_ENTRY, EPOCH_ENTRY_BYTES

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


# Inside a .keras archive. A model's config.json is a few kB and metadata.json a line: a cap well
# above that bounds what a damaged or hostile member can make us read and parse.
JSON_MEMBER_BYTES = 1_000_000
WEIGHTS_MEMBER = "model.weights.h5"
KNOWN_MEMBERS = {"config.json", "metadata.json", WEIGHTS_MEMBER, "composer.json"}  # composer.json: runs.EPOCH_ENTRY
# the layers of build_model and their groups in model.weights.h5 (Keras names them by class, in
# layer order: lstm, lstm_1, ...); Dropout is the identity at inference, so it may be anywhere
H5_NAMES = {"InputLayer": "input_layer", "Embedding": "embedding", "Dropout": "dropout", "LSTM": "lstm", "Dense": "dense"}


class CheckpointProblem(Exception):
    """Why a checkpoint cannot be used, in words that follow its path on one line."""


@dataclass
class StepperWeights:
    """What ``LSTMStepper`` computes with: float32 arrays in the layout of Keras's layers."""

    embedding: np.ndarray  # (vocab, embedding)
    cells: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # per LSTM: kernel, recurrent kernel, bias (gates i, f, g, o)
    dense: tuple[np.ndarray, np.ndarray]  # (units, vocab), (vocab,)

    @staticmethod
    def from_keras(model) -> "StepperWeights":
        """The weights of a live model from ``build_model`` (training side, tests)."""
        cells = []
        while any(layer.name == f"lstm_{len(cells)}" for layer in model.layers):
            layer = model.get_layer(f"lstm_{len(cells)}")
            cells.append(tuple(np.asarray(w, dtype=np.float32) for w in layer.get_weights()))
        dense = model.get_layer("logits").get_weights()
        embedding = np.asarray(model.get_layer("embedding").embeddings, dtype=np.float32)
        return StepperWeights(embedding, cells, (np.asarray(dense[0], np.float32), np.asarray(dense[1], np.float32)))


def parameter_count(config: ModelConfig) -> int:
    count = config.vocab_size * config.embedding + (config.units + 1) * config.vocab_size
    for i in range(config.layers):
        inputs = config.embedding if i == 0 else config.units
        count += (inputs + config.units + 1) * 4 * config.units
    return count


def weights_cap(config: ModelConfig) -> int:
    """The most bytes model.weights.h5 of this architecture can honestly hold: float32 weights,
    the two Adam moments of each (last.keras keeps the optimizer), float64 slack and 1 MB of
    HDF5 bookkeeping."""
    return 16 * parameter_count(config) + 1_000_000


def read_member(archive, name: str, cap: int) -> bytes:
    """A member's bytes, refused by its declared size before a byte is read; a failing checksum
    is damage. zipfile stops at the declared size, and ``read(cap)`` bounds it again."""
    import zipfile

    try:
        info = archive.getinfo(name)
    except KeyError:
        raise CheckpointProblem(f"not a loadable checkpoint (no {name} in the archive)") from None
    if info.file_size > cap:
        raise CheckpointProblem(f"{name} claims {info.file_size:,} bytes, over the {cap:,} it can hold")
    try:
        with archive.open(info) as member:
            return member.read(cap)
    except zipfile.BadZipFile as error:
        if "CRC" in str(error):
            raise CheckpointProblem(f"damaged archive ({name} fails its checksum)") from None
        raise CheckpointProblem(f"not a loadable checkpoint ({first_line(error)})") from None
    except (OSError, EOFError, ValueError, NotImplementedError) as error:  # truncated, unsupported compression
        raise CheckpointProblem(f"not a loadable checkpoint ({first_line(error)})") from None


def parse_json_object(data: bytes, name: str) -> dict:
    """A member's JSON, which must be an object; nesting too deep for Python's parser is damage too."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise CheckpointProblem(f"{name} is nested too deeply to be a model's") from None
    except ValueError as error:  # also UnicodeDecodeError
        raise CheckpointProblem(f"{name} is not JSON ({first_line(error)})") from None
    if not isinstance(value, dict):
        raise CheckpointProblem(f"{name} is a JSON {type(value).__name__}, not an object")
    return value


def first_line(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:120]


def model_layers(config: dict) -> list[dict]:
    """config.json's layers, each a dict with a class name and a config holding its name."""
    layers = config.get("config", {}).get("layers") if isinstance(config.get("config"), dict) else None
    if config.get("class_name") != "Functional" or not isinstance(layers, list):
        raise CheckpointProblem("config.json does not describe a functional model's layers")
    for layer in layers:
        if not (
            isinstance(layer, dict) and isinstance(layer.get("class_name"), str)
            and isinstance(layer.get("config"), dict) and isinstance(layer["config"].get("name"), str)
        ):
            raise CheckpointProblem(f"config.json describes a layer as {str(layer)[:60]!r}, not as a layer")
    return layers


def check_architecture(layers: list[dict], expected: ModelConfig) -> None:
    """The layers are build_model's for ``expected``, in its order, each fed by the one before,
    with the settings the stepper computes (anything else would sample from another function)."""
    by_name = {layer["config"]["name"]: layer for layer in layers}
    wanted = {"embedding": ("Embedding", "output_dim", expected.embedding), "logits": ("Dense", "units", expected.vocab_size)}
    wanted.update({f"lstm_{i}": ("LSTM", "units", expected.units) for i in range(expected.layers)})
    for name, (kind, key, size) in wanted.items():
        layer = by_name.get(name)
        if layer is None:
            raise CheckpointProblem(f"has no layer {name!r}; run.json describes {expected.layers} x {expected.units} LSTM layers")
        if layer.get("class_name") != kind:
            raise CheckpointProblem(f"layer {name!r} is a {layer.get('class_name')}, not an {kind}")
        if layer["config"].get(key) != size:
            if name == "logits":
                raise CheckpointProblem(f"checkpoint predicts {layer['config'].get(key)} tokens but the run's vocabulary has {size}")
            raise CheckpointProblem(f"layer {name!r} has {key} {layer['config'].get(key)} but run.json says {size}")
    extra = sorted(n for n in by_name if n.startswith("lstm_") and n not in wanted)
    if extra:
        raise CheckpointProblem(f"has more LSTM layers ({', '.join(extra)}) than the {expected.layers} run.json describes")
    for layer in layers:
        if layer["class_name"] not in H5_NAMES:
            raise CheckpointProblem(
                f"layer {layer['config']['name']!r} is a {layer['class_name']}, which a checkpoint of this model never holds"
            )
    order = [layer["config"]["name"] for layer in layers if layer["class_name"] != "Dropout"]
    if order != ["tokens", "embedding", *(f"lstm_{i}" for i in range(expected.layers)), "logits"] or layers[0]["class_name"] != "InputLayer":
        raise CheckpointProblem(f"layers in the order {', '.join(order)[:120]}, not tokens, embedding, lstm_0 ... logits")
    for before, layer in zip(layers, layers[1:]):
        if inbound(layer) != [before["config"]["name"]]:
            raise CheckpointProblem(f"layer {layer['config']['name']!r} is not fed by {before['config']['name']!r} alone")
    for layer in layers:
        problem = setting_problem(layer["class_name"], layer["config"])
        if problem:
            raise CheckpointProblem(f"layer {layer['config']['name']!r} has {problem}, which sampling does not compute")


def inbound(layer: dict) -> list[str]:
    """The names of the layers whose outputs feed this one (config.json's keras_history)."""
    names = []
    nodes = layer.get("inbound_nodes")
    for node in nodes if isinstance(nodes, list) else []:
        for arg in node.get("args", []) if isinstance(node, dict) and isinstance(node.get("args"), list) else []:
            history = arg.get("config", {}).get("keras_history") if isinstance(arg, dict) and isinstance(arg.get("config"), dict) else None
            names.append(history[0] if isinstance(history, list) and history else "?")
    return names


def setting_problem(kind: str, config: dict) -> str | None:
    """A layer setting that changes what the layer computes from what ``LSTMStepper`` does."""
    required = {
        "LSTM": {"activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True, "go_backwards": False, "return_sequences": True},
        "Dense": {"activation": "linear", "use_bias": True},
        "Embedding": {"mask_zero": False},
    }.get(kind, {})
    for key, value in required.items():
        if config.get(key, value) != value:
            return f"{key} {config.get(key)!r}"
    if config.get("quantization_config") is not None:
        return "quantized weights"
    return None


def read_weights(data: bytes, layers: list[dict], expected: ModelConfig) -> StepperWeights:
    """The arrays of model.weights.h5 (Keras 3 layout: layers/<class name>[_k]/[cell/]vars/<i>,
    numbered by class in layer order), each checked for its shape and finite values."""
    import io

    import h5py

    groups, seen = {}, {}
    for layer in layers:
        base = H5_NAMES[layer["class_name"]]
        seen[base] = seen.get(base, -1) + 1
        groups[layer["config"]["name"]] = base if seen[base] == 0 else f"{base}_{seen[base]}"
    u, vocab = expected.units, expected.vocab_size
    shapes = {"embedding": ("vars", [(vocab, expected.embedding)]), "logits": ("vars", [(u, vocab), (vocab,)])}
    for i in range(expected.layers):
        inputs = expected.embedding if i == 0 else u
        shapes[f"lstm_{i}"] = ("cell/vars", [(inputs, 4 * u), (u, 4 * u), (4 * u,)])
    try:
        with h5py.File(io.BytesIO(data), "r") as weights:
            if not isinstance(weights.get("layers"), h5py.Group):
                raise CheckpointProblem(f"{WEIGHTS_MEMBER} holds no layers")
            found = set(weights["layers"].keys())
            if found != set(groups.values()):
                raise CheckpointProblem(f"{WEIGHTS_MEMBER} holds weights of layers {', '.join(sorted(found))[:120]}, not of the model config.json describes")
            arrays = {name: layer_arrays(weights["layers"], groups[name], where, wanted) for name, (where, wanted) in shapes.items()}
    except OSError as error:
        raise CheckpointProblem(f"{WEIGHTS_MEMBER} is not readable HDF5 ({first_line(error)})") from None
    cells = [tuple(arrays[f"lstm_{i}"]) for i in range(expected.layers)]
    return StepperWeights(arrays["embedding"][0], cells, tuple(arrays["logits"]))


def layer_arrays(layers, group: str, where: str, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """One layer's weight arrays, exactly ``shapes``, floating point and finite, as float32."""
    import h5py

    variables = layers.get(f"{group}/{where}")
    place = f"layers/{group}/{where}"
    if not isinstance(variables, h5py.Group) or sorted(variables.keys()) != [str(i) for i in range(len(shapes))]:
        names = sorted(variables.keys()) if isinstance(variables, h5py.Group) else []
        raise CheckpointProblem(f"{WEIGHTS_MEMBER}: {place} holds weights {names}, not the {len(shapes)} of its layer")
    arrays = []
    for i, shape in enumerate(shapes):
        dataset = variables[str(i)]
        if not isinstance(dataset, h5py.Dataset) or dataset.shape != shape or dataset.dtype.kind != "f":
            found = f"{dataset.dtype} {dataset.shape}" if isinstance(dataset, h5py.Dataset) else "a group"
            raise CheckpointProblem(f"{WEIGHTS_MEMBER}: {place}/{i} is {found}, not float {shape}")
        array = np.asarray(dataset[()], dtype=np.float32)
        if not np.isfinite(array).all():
            raise CheckpointProblem(f"{WEIGHTS_MEMBER}: {place}/{i} holds values that are not finite numbers")
        arrays.append(array)
    return arrays


def inspect_checkpoint(path: Path, expected: ModelConfig | None = None) -> StepperWeights | None:
    """Read a .keras archive without TensorFlow: every member bounded and checksummed; with
    ``expected`` (run.json's model) the layers checked against it and the weights returned."""
    import zipfile

    if not path.is_file():
        raise CheckpointProblem("no such checkpoint")
    try:
        with zipfile.ZipFile(path) as archive:
            unknown = sorted(set(archive.namelist()) - KNOWN_MEMBERS)
            if unknown:
                raise CheckpointProblem(f"not a loadable checkpoint (unexpected member {unknown[0][:80]!r})")
            config = parse_json_object(read_member(archive, "config.json", JSON_MEMBER_BYTES), "config.json")
            parse_json_object(read_member(archive, "metadata.json", JSON_MEMBER_BYTES), "metadata.json")
            if EPOCH_ENTRY in archive.namelist():
                parse_json_object(read_member(archive, EPOCH_ENTRY, EPOCH_ENTRY_BYTES), EPOCH_ENTRY)
            layers = model_layers(config)
            if expected is None:
                return None
            check_architecture(layers, expected)
            return read_weights(read_member(archive, WEIGHTS_MEMBER, weights_cap(expected)), layers, expected)
    except (OSError, zipfile.BadZipFile) as error:
        raise CheckpointProblem(f"not a loadable checkpoint ({first_line(error)})") from None


def checkpoint_problem(path: Path, expected: ModelConfig | None = None) -> str | None:
    """Why a .keras file is not a checkpoint of this architecture, read from the archive alone
    (no TensorFlow): damaged or truncated, hostile, or layers and weights other than run.json
    describes (``inspect_checkpoint``). None if fine."""
    try:
        inspect_checkpoint(path, expected)
    except CheckpointProblem as problem:
        return str(problem)
    return None


def load_weights(path: Path, expected: ModelConfig) -> StepperWeights:
    """The weights of a checkpoint of run.json's architecture, for sampling (no TensorFlow);
    anything wrong with the file is one line naming it."""
    try:
        return inspect_checkpoint(path, expected)
    except CheckpointProblem as problem:
        raise ComposerError(f"{path}: {problem}") from None


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


def _gate_scale(units: int) -> np.ndarray:
    """Per column of an LSTM's gates (i, f, g, o): 0.5 where a sigmoid is taken, 1 for g.

    sigmoid(x) = 0.5 tanh(x / 2) + 0.5 (overflow-free), so with the weights of the sigmoid
    gates halved beforehand (exact in floating point) one tanh over all gates serves all four."""
    scale = np.full(4 * units, 0.5, dtype=np.float32)
    scale[2 * units : 3 * units] = 1.0
    return scale


def _cell(z: np.ndarray, c: np.ndarray, units: int) -> tuple[np.ndarray, np.ndarray]:
    """One LSTM cell update from the scaled pre-activations ``z`` (overwritten) → (h, c)."""
    u = units
    t = np.tanh(z, out=z)
    gates = t * 0.5 + 0.5  # the sigmoids; its g columns are unused
    c = gates[:, u : 2 * u] * c + gates[:, :u] * t[:, 2 * u : 3 * u]
    return gates[:, 3 * u :] * np.tanh(c), c


class LSTMStepper:
    """One-token-at-a-time inference with the weights of a model from ``build_model``."""

    def __init__(self, weights: StepperWeights):
        self.embedding = weights.embedding
        self.units = weights.cells[0][2].shape[0] // 4
        scale = _gate_scale(self.units)
        # one matrix for input and state: [x, h] @ [[W], [U]] saves a product per step
        self.cells = [(np.concatenate([kernel, recurrent]) * scale, bias * scale) for kernel, recurrent, bias in weights.cells]
        self.dense_w, self.dense_b = weights.dense

    def digest(self) -> str:
        """A hash of every weight: what a number computed with this stepper depends on."""
        digest = hashlib.sha256()
        for array in [self.embedding, *(a for cell in self.cells for a in cell), self.dense_w, self.dense_b]:
            digest.update(str(array.shape).encode() + np.ascontiguousarray(array, np.float32).tobytes())
        return digest.hexdigest()

    def initial_state(self, batch: int) -> list[tuple[np.ndarray, np.ndarray]]:
        zeros = np.zeros((batch, self.units), dtype=np.float32)
        return [(zeros, zeros) for _ in self.cells]

    def step(self, tokens: np.ndarray, state: list[tuple[np.ndarray, np.ndarray]]):
        """tokens (batch,) → logits (batch, vocab) and the new state."""
        x = self.embedding[tokens]
        new_state = []
        u = self.units
        for (weights, bias), (h, c) in zip(self.cells, state):
            h, c = _cell(np.concatenate([x, h], axis=1) @ weights + bias, c, u)
            new_state.append((h, c))
            x = h
        return x @ self.dense_w + self.dense_b, new_state

    def nll(self, pieces: list[np.ndarray], batch: int = 64) -> tuple[float, int]:
        """Summed negative log-likelihood (nats) of tokens[1:] given tokens[:-1], over whole
        pieces, as ``train.token_nll`` computes it (eval mode), without TensorFlow; ``batch``
        pieces of similar length at a time bound the memory."""
        from threadpoolctl import threadpool_limits

        ordered = sorted((np.asarray(p) for p in pieces if len(p) > 1), key=len, reverse=True)
        total, count = 0.0, 0
        # one BLAS thread, as in sampling: on two shared cores, BLAS workers made this 10x slower
        with threadpool_limits(limits=1, user_api="blas"):
            for start in range(0, len(ordered), batch):
                nats, tokens = self._batch_nll(ordered[start : start + batch])
                total += nats
                count += tokens
        return total, count

    def _batch_nll(self, group: list[np.ndarray], chunk: int = 64) -> tuple[float, int]:
        """Pieces longest first advance together; at each step only those still going are
        computed (a prefix of the batch), so no work is spent on padding. Layer by layer over
        ``chunk`` steps at a time: a layer's input products for the whole chunk are one large
        product (the first layer's a row look-up of the embedding's), so only the recurrent
        product is left step by step (half the work of the step, faster per operation)."""
        lengths = np.array([len(p) for p in group])
        tokens = np.zeros((len(group), lengths[0]), np.int64)
        for row, piece in enumerate(group):
            tokens[row, : len(piece)] = piece
        steps = int(lengths[0]) - 1
        live = (lengths[None, :] > np.arange(1, steps + 1)[:, None]).sum(axis=1)  # rows going at step t
        offsets = np.concatenate([[0], np.cumsum(live)])
        # time-major, live rows only: step t's inputs and targets lie at offsets[t]:offsets[t + 1]
        going = np.arange(len(group))[None, :] < live[:, None]
        inputs, targets = tokens[:, :-1].T[going], tokens[:, 1:].T[going]
        units = self.units
        first, first_bias = self.cells[0]
        by_token = self.embedding @ first[:-units] + first_bias  # the first layer's input product per token id
        state = self.initial_state(len(group))
        total = 0.0
        for start in range(0, steps, chunk):
            stop = min(steps, start + chunk)
            base = offsets[start]
            x = by_token[inputs[base : offsets[stop]]]
            for layer, (weights, bias) in enumerate(self.cells):
                if layer:
                    x = x @ weights[:-units] + bias  # [x, h] @ [[W], [U]] = x @ W + h @ U
                recurrent, (h, c) = weights[-units:], state[layer]
                out = np.empty((len(x), units), np.float32)
                for t in range(start, stop):
                    rows, at = slice(offsets[t] - base, offsets[t + 1] - base), live[t]
                    h, c = _cell(x[rows] + h[:at] @ recurrent, c[:at], units)
                    out[rows] = h
                state[layer], x = (h, c), out
            scores = (x @ self.dense_w + self.dense_b).astype(np.float64)
            top = scores.max(axis=1, keepdims=True)
            log_norm = np.log(np.exp(scores - top).sum(axis=1)) + top[:, 0]
            total += float((log_norm - scores[np.arange(len(scores)), targets[base : offsets[stop]]]).sum())
        return total, len(targets)

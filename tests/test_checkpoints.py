"""Checkpoints read without TensorFlow: hostile and damaged archives are refused in one line by
`generate` and `info` alike, and `generate`, `compare` and `info` never import TensorFlow or Keras.

The crafted archives start from a real checkpoint of a tiny model and change one member each.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from composer.config import ModelConfig
from composer.model import JSON_MEMBER_BYTES, build_model, weights_cap

pytestmark = pytest.mark.tensorflow  # builds and trains Keras models
from test_generate import TINY, invoke, make_run, one_line_error, untrained

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "outputs" / "bach-small-reference"
VOCAB = 147


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    from composer.tokens import Vocabulary

    return make_run(tmp_path_factory.mktemp("good-run"), Vocabulary(), untrained(Vocabulary(), seed=3))


def copy_with(good_run: Path, folder: Path, change: Callable[[dict[str, bytes]], None], checkpoint: str = "epoch-0001.keras") -> Path:
    """A copy of the run whose checkpoint's members (name -> bytes) went through ``change``."""
    run = folder / "run"
    shutil.copytree(good_run, run)
    path = run / "checkpoints" / checkpoint
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    change(members)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return run


def edit_config(change: Callable[[dict], None]) -> Callable[[dict[str, bytes]], None]:
    def edit(members: dict[str, bytes]) -> None:
        config = json.loads(members["config.json"])
        change(config)
        members["config.json"] = json.dumps(config).encode()

    return edit


def edit_weights(change: Callable, tmp: Path) -> Callable[[dict[str, bytes]], None]:
    """Change model.weights.h5 with h5py (``change`` gets the open file)."""
    import h5py

    def edit(members: dict[str, bytes]) -> None:
        scratch = tmp / "weights.h5"
        scratch.write_bytes(members["model.weights.h5"])
        with h5py.File(scratch, "r+") as weights:
            change(weights)
        members["model.weights.h5"] = scratch.read_bytes()

    return edit


def refused(run: Path, reason: str) -> None:
    """generate fails with one line naming epoch 1's file and the reason; info lists it as damaged."""
    path = run / "checkpoints" / "epoch-0001.keras"
    line = one_line_error(invoke("generate", run, "--epoch", "1", "--tokens", 20, "--out", run / "samples"))
    assert str(path) in line and reason in line, line
    assert not (run / "samples").exists()
    result = invoke("info", run)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert any(str(path) in row and "DAMAGED" in row and reason in row for row in result.output.splitlines()), result.output


def with_extra_layer(layer):
    """A checkpoint of build_model's tiny model with ``layer`` between the last LSTM and the logits."""
    import keras

    model = untrained_model()
    x = model.get_layer("dropout_1").output
    logits = model.get_layer("logits")
    rebuilt = keras.Model(model.input, keras.layers.Dense(VOCAB, name="logits")(layer(x)))
    rebuilt.get_layer("logits").set_weights(logits.get_weights())
    return rebuilt


def untrained_model():
    import keras

    keras.utils.set_random_seed(3)
    return build_model(ModelConfig(VOCAB, **TINY))


# ---- sizes and JSON --------------------------------------------------------------------------------------


def test_a_huge_config_member_is_refused_by_its_size(good_run, tmp_path):
    def pad(members):
        members["config.json"] = b" " * (JSON_MEMBER_BYTES + 10) + members["config.json"]

    refused(copy_with(good_run, tmp_path, pad), f"config.json claims {JSON_MEMBER_BYTES + 10 + len(good_member(good_run, 'config.json')):,} bytes, over the 1,000,000")


def test_a_weights_member_larger_than_the_architecture_allows_is_refused(good_run, tmp_path):
    cap = weights_cap(ModelConfig(VOCAB, **TINY))

    def pad(members):
        members["model.weights.h5"] += bytes(cap)

    refused(copy_with(good_run, tmp_path, pad), f"model.weights.h5 claims {len(good_member(good_run, 'model.weights.h5')) + cap:,} bytes, over the {cap:,}")


def good_member(good_run: Path, name: str) -> bytes:
    with zipfile.ZipFile(good_run / "checkpoints" / "epoch-0001.keras") as archive:
        return archive.read(name)


def test_a_declared_size_is_checked_before_reading(good_run, tmp_path):
    """The cap is judged from the zip's header: a member claiming a gigabyte is refused unread."""
    run = copy_with(good_run, tmp_path, lambda members: None)
    path = run / "checkpoints" / "epoch-0001.keras"
    data = bytearray(path.read_bytes())
    entry = central_entry(data, "config.json")
    data[entry + 24 : entry + 28] = (10**9).to_bytes(4, "little")  # the uncompressed size zipfile trusts
    path.write_bytes(bytes(data))
    refused(run, "config.json claims 1,000,000,000 bytes")


def central_entry(data: bytearray, name: str) -> int:
    """Offset of the central directory entry of member ``name``."""
    start = 0
    while True:
        start = data.index(b"PK\x01\x02", start)
        length = int.from_bytes(data[start + 28 : start + 30], "little")
        if bytes(data[start + 46 : start + 46 + length]) == name.encode():
            return start
        start += 4


@pytest.mark.parametrize("member", ["config.json", "metadata.json", "composer.json"])
def test_deeply_nested_json_is_one_line(good_run, tmp_path, member):
    def nest(members):
        members[member] = b"[" * 2000 + b"]" * 2000  # within composer.json's 4 kB, twice the recursion limit deep

    refused(copy_with(good_run, tmp_path, nest), f"{member} is nested too deeply")


def test_deeply_nested_epoch_entry_of_last_keras_is_one_line(good_run, tmp_path):
    """last.keras's composer.json is read first of all (which epoch it holds): the same one line."""
    def nest(members):
        members["composer.json"] = b"[" * 4000

    run = copy_with(good_run, tmp_path, nest, "last.keras")
    line = one_line_error(invoke("generate", run, "--epoch", "last", "--tokens", 20, "--out", run / "samples"))
    assert "last.keras" in line and "damaged composer.json" in line, line


@pytest.mark.parametrize("member,content,reason", [
    ("composer.json", b"[1, 2]", "composer.json is a JSON list, not an object"),
    ("metadata.json", b'"keras"', "metadata.json is a JSON str, not an object"),
    ("config.json", b"{not json", "config.json is not JSON"),
    ("config.json", b"\xff\xfe", "config.json is not JSON"),
])
def test_members_that_are_not_json_objects(good_run, tmp_path, member, content, reason):
    def replace(members):
        members[member] = content

    refused(copy_with(good_run, tmp_path, replace), reason)


def test_layers_given_as_numbers(good_run, tmp_path):
    def ints(config):
        config["config"]["layers"] = [1, 2, 3]

    refused(copy_with(good_run, tmp_path, edit_config(ints)), "describes a layer as '1'")


def test_a_missing_or_unexpected_member(good_run, tmp_path):
    refused(copy_with(good_run, tmp_path / "a", lambda m: m.pop("model.weights.h5")), "no model.weights.h5 in the archive")
    refused(copy_with(good_run, tmp_path / "b", lambda m: m.update({"payload.so": b"\x7fELF"})), "unexpected member 'payload.so'")


def test_a_failing_checksum_is_damage(good_run, tmp_path):
    run = copy_with(good_run, tmp_path, lambda members: None)
    path = run / "checkpoints" / "epoch-0001.keras"
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("model.weights.h5")
    data[info.header_offset + 30 + len(info.filename) + 5000] ^= 0xFF  # stored: a byte of the weights themselves
    path.write_bytes(bytes(data))
    refused(run, "model.weights.h5 fails its checksum")


# ---- layers and weights ----------------------------------------------------------------------------------


def test_an_extra_layer_is_refused(good_run, tmp_path):
    import keras

    def extra(members):
        scratch = tmp_path / "extra.keras"
        with_extra_layer(keras.layers.Dense(32, name="extra")).save(scratch)
        with zipfile.ZipFile(scratch) as archive:
            members.update({name: archive.read(name) for name in archive.namelist()})

    refused(copy_with(good_run, tmp_path, extra), "layers in the order tokens, embedding, lstm_0, lstm_1, extra, logits")


def test_a_lambda_layer_is_refused_without_running_it(good_run, tmp_path):
    import keras

    marker = tmp_path / "lambda-ran"

    def touch(x):
        marker.touch()
        return x

    def evil(members):
        scratch = tmp_path / "evil.keras"
        with_extra_layer(keras.layers.Lambda(touch, name="evil")).save(scratch)
        with zipfile.ZipFile(scratch) as archive:
            members.update({name: archive.read(name) for name in archive.namelist()})

    run = copy_with(good_run, tmp_path, evil)
    marker.unlink(missing_ok=True)
    refused(run, "layer 'evil' is a Lambda")
    assert not marker.exists()


def test_layer_settings_the_stepper_does_not_compute(good_run, tmp_path):
    def relu(config):
        next(l for l in config["config"]["layers"] if l["config"]["name"] == "lstm_1")["config"]["activation"] = "relu"

    refused(copy_with(good_run, tmp_path / "a", edit_config(relu)), "layer 'lstm_1' has activation 'relu'")

    def rewired(config):
        logits = next(l for l in config["config"]["layers"] if l["config"]["name"] == "logits")
        logits["inbound_nodes"][0]["args"][0]["config"]["keras_history"][0] = "lstm_0"

    refused(copy_with(good_run, tmp_path / "b", edit_config(rewired)), "layer 'logits' is not fed by 'dropout_1' alone")


def test_a_missing_weight_is_refused(good_run, tmp_path):
    def drop(weights):
        del weights["layers/lstm_1/cell/vars/2"]

    refused(copy_with(good_run, tmp_path, edit_weights(drop, tmp_path)), "layers/lstm_1/cell/vars holds weights ['0', '1'], not the 3")


@pytest.mark.parametrize("garbage,reason", [
    ("nan", "layers/lstm/cell/vars/0 holds values that are not finite"),
    ("shape", "layers/lstm/cell/vars/0 is float32 (3, 3), not float (16, 128)"),
    ("text", "layers/dense/vars/1 is |S"),
])
def test_garbage_weights_are_refused(good_run, tmp_path, garbage, reason):
    def spoil(weights):
        if garbage == "nan":
            kernel = weights["layers/lstm/cell/vars/0"]
            kernel[0, 0] = np.nan
        elif garbage == "shape":
            del weights["layers/lstm/cell/vars/0"]
            weights["layers/lstm/cell/vars/0"] = np.zeros((3, 3), np.float32)
        else:
            del weights["layers/dense/vars/1"]
            weights["layers/dense/vars/1"] = np.array([b"x"] * VOCAB)

    refused(copy_with(good_run, tmp_path, edit_weights(spoil, tmp_path)), reason)


def test_weights_that_are_not_hdf5(good_run, tmp_path):
    def noise(members):
        members["model.weights.h5"] = np.random.default_rng(0).bytes(5000)

    refused(copy_with(good_run, tmp_path, noise), "model.weights.h5 is not readable HDF5")


# ---- no TensorFlow on the inference paths ------------------------------------------------------------------


# the command's own main() in this process, then which heavy modules it imported
PROBE = (
    "import sys, json; import composer.cli; sys.argv = ['composer', *sys.argv[1:]]; code = None\n"
    "try:\n    composer.cli.main()\nexcept SystemExit as done:\n    code = done.code\n"
    "print(json.dumps([code, [m for m in ('tensorflow', 'keras') if m in sys.modules]]))"
)


@pytest.mark.parametrize("args", [
    ["info", str(REFERENCE)],
    ["generate", str(REFERENCE), "--epoch", "150", "--num", "2", "--tokens", "60", "--wav"],
    ["compare", str(REFERENCE), "--epochs", "100,150", "--num", "1", "--samples", "2", "--bars", "1"],
], ids=["info", "generate", "compare"])
def test_inference_commands_never_import_tensorflow(args, tmp_path):
    if args[0] != "info":
        args = [*args, "--out", str(tmp_path / "out")]
    probe = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert probe.returncode == 0, probe.stderr
    code, heavy = json.loads(probe.stdout.strip().splitlines()[-1])
    assert code in (0, None), probe.stdout + probe.stderr
    assert heavy == [], f"`composer {args[0]}` imported {heavy}"
    if args[0] != "info":
        assert any((tmp_path / "out").iterdir())

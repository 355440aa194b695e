"""Run files and corpora edited by hand, cut short or crafted: every command that reads them
answers with one line naming the file and the field, exit 1, and changes nothing in the run."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from train_fixtures import copy_run, invoke, one_error, tree

pytestmark = pytest.mark.tensorflow  # trains tiny runs


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def set_field(path: str, value):
    def change(values: dict) -> dict:
        *parents, last = path.split(".")
        here = values
        for key in parents:
            here = here[key]
        here[last] = value
        return values

    return change


def instruments_with_ties(values: dict) -> dict:
    """A vocabulary consistent in itself (its tokens and the model's size rebuilt) of settings
    that cannot tokenize together."""
    from composer.tokens import TokenizerConfig, Vocabulary

    config = TokenizerConfig.from_dict({**values["vocabulary"]["config"], "instruments": True, "long_notes": "tie"})
    values["vocabulary"] = Vocabulary(config).to_dict()
    values["model"]["vocab_size"] = len(Vocabulary(config))
    return values


# (what is changed, how, the field the error must name). One per class of field: whole numbers,
# finite numbers, text with a form, lists of pairs, nested objects, unknown and missing fields.
TAMPERINGS = {
    "window 0": (set_field("train.window", 0), "train.window"),
    "batch 0": (set_field("train.batch", 0), "train.batch"),
    "epochs infinite": (set_field("train.epochs", float("inf")), "train.epochs"),
    "learning rate as text": (set_field("train.learning_rate", "fast"), "train.learning_rate"),
    "schedule garbage": (set_field("train.schedule", [[0, "x"]]), "train.schedule"),
    "schedule out of order": (set_field("train.schedule", [[0, 2], [5, 1]]), "train.schedule"),
    "decay unknown": (set_field("train.decay", "sawtooth"), "train.decay"),
    "max_voices negative": (set_field("data.max_voices", -1), "data.max_voices"),
    "metre x": (set_field("data.time_signature", "x"), "data.time_signature"),
    "metre 0/4": (set_field("data.time_signature", "0/4"), "data.time_signature"),
    "median bpm 0": (set_field("data.median_bpm", 0), "data.median_bpm"),
    "data as text": (set_field("data", "bach"), "data"),
    "layers 10^9": (set_field("model.layers", 10**9), "model.layers"),
    "model as a list": (set_field("model", [1, 2]), "model"),
    "extra model key": (set_field("model.attention", True), "model.attention"),
    "missing train": (lambda values: {k: v for k, v in values.items() if k != "train"}, "train: missing"),
    "steps per quarter 0": (set_field("vocabulary.config.steps_per_quarter", 0), "vocabulary.config.steps_per_quarter"),
    "huge beat_res": (set_field("vocabulary.config.beat_res", [[0, 10**6, 12]]), "vocabulary.config.beat_res"),
    "long notes unknown": (set_field("vocabulary.config.long_notes", "stretch"), "vocabulary.config.long_notes"),
    "vocab size not the vocabulary's": (set_field("model.vocab_size", 50), "model.vocab_size"),
    "instruments with tied notes": (instruments_with_ties, "vocabulary.config: instruments and tied long notes"),
    "baseline as text": (set_field("baseline", "good"), "baseline"),
}
RAW = {
    "a list": ("[1, 2, 3]", "not an object"),
    "nested too deeply": (nested(100_000), "nested too deeply"),
    "not JSON": ("{model: ", "damaged"),
}


def tampered_copy(run: Path, dest: Path, text: str) -> Path:
    again = copy_run(run, dest)
    (again / "run.json").write_text(text)
    return again


COMMANDS = {
    "info": lambda r: ["info", r],
    "generate": lambda r: ["generate", r, "--epoch", "2", "--tokens", "20"],
    "compare": lambda r: ["compare", r, "--epochs", "1,2", "--samples", "2", "--num", "1", "--bars", "1"],
    "resume": lambda r: ["train", "--out", r, "--resume", "--epochs", "3"],
}


@pytest.mark.parametrize("name", list(TAMPERINGS) + list(RAW))
def test_a_tampered_run_json_is_one_line_naming_the_field_for_every_command(tmp_path, run, name):
    if name in TAMPERINGS:
        change, field = TAMPERINGS[name]
        text = json.dumps(change(json.loads((run / "run.json").read_text())))
    else:
        text, field = RAW[name]
    again = tampered_copy(run, tmp_path / "again", text)
    before = tree(again)
    for command, args in COMMANDS.items():
        line = one_error(invoke(*args(again)), "run.json", field)
        assert tree(again) == before, f"{command} changed the run folder"
        assert len(line) < 300, line


def test_an_oversized_run_json_is_refused_before_it_is_parsed(tmp_path, run):
    again = tampered_copy(run, tmp_path / "again", "{" + " " * 2_000_000 + "}")
    one_error(invoke("info", again), "run.json", "over 1,000,000 bytes")


def test_the_untampered_reference_run_still_reads():
    """The shipped run.json passes every check (the checks are not stricter than what we write)."""
    from composer.runs import Run

    config = Run(Path("outputs/bach-small-reference")).config()
    assert config.model_config().layers == 2 and config.train_config().epochs == 150


@pytest.mark.parametrize("text,named", [
    ("epoch,loss,val_loss,val_bits_per_note,seconds\n1,0.5,x,3.0,1.0\n", "val_loss 'x' is not a number"),
    ("epoch;loss;val_loss\n1;0.5;0.6\n", "is not a number"),
    ("epoch,loss\n" + "1," + '"' + "9" * 200_000 + '"\n', "history.csv"),
])
def test_a_damaged_history_is_one_line_on_resume_and_info(tmp_path, run, text, named):
    again = copy_run(run, tmp_path / "again")
    (again / "history.csv").write_text(text)
    before = tree(again)
    for args in (["info", again], ["train", "--out", again, "--resume", "--epochs", "3"]):
        one_error(invoke(*args), "history.csv", named)
        assert tree(again) == before


# ---- the tokenized corpus -----------------------------------------------------------------------


def rewrite_tokens(corpus: Path, dest: Path, tokens: np.ndarray, offsets: np.ndarray) -> Path:
    """A copy of ``corpus`` whose tokens.npz holds these arrays, its hash in corpus.json updated
    (as a careful tamperer, or another program, would), so only the contents can tell."""
    shutil.copytree(corpus, dest)
    buffer = io.BytesIO()
    np.savez(buffer, tokens=tokens.astype(np.int16), offsets=offsets.astype(np.int64))
    (dest / "tokens.npz").write_bytes(buffer.getvalue())
    record = json.loads((dest / "corpus.json").read_text())
    record["files"]["tokens.npz"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (dest / "corpus.json").write_text(json.dumps(record))
    return dest


def corpus_arrays(corpus: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(corpus / "tokens.npz") as arrays:
        return arrays["tokens"], arrays["offsets"]


@pytest.mark.parametrize("damage,named", [
    (lambda t, o: (np.where(t == t.max(), 30_000, t), o), "token ids outside the vocabulary"),
    (lambda t, o: (t, o[::-1].copy()), "offsets do not cut"),
    (lambda t, o: (t, o + 5), "offsets do not cut"),
])
def test_a_corpus_with_impossible_tokens_is_refused_before_training_writes_anything(tmp_path, corpus, damage, named):
    bad = rewrite_tokens(corpus, tmp_path / "bad", *damage(*corpus_arrays(corpus)))
    one_error(invoke("train", bad, "--out", tmp_path / "run", "--epochs", "1"), str(bad), named)
    assert not (tmp_path / "run" / "run.json").exists() and not (tmp_path / "run" / "baseline.json").exists()


@pytest.mark.parametrize("contents", [b"", b"PK\x03\x04 cut short"])
def test_a_truncated_tokens_file_is_one_line_naming_the_corpus(tmp_path, corpus, contents):
    bad = shutil.copytree(corpus, tmp_path / "bad")
    (bad / "tokens.npz").write_bytes(contents)
    one_error(invoke("train", bad, "--out", tmp_path / "run", "--epochs", "1"), str(bad))


def test_a_damaged_cache_entry_is_recomputed(tmp_path, chorale_files):
    from composer.dataset import TokenCorpus, tokenize_corpus

    cache = tmp_path / "cache"
    files = chorale_files[:3]
    tokenize_corpus(files, tmp_path / "first", cache_dir=cache)
    entries = sorted(cache.rglob("*.npz"))
    assert len(entries) == 3
    entries[0].write_bytes(entries[0].read_bytes()[:40])  # cut short, as by a full disk or a kill
    summary = tokenize_corpus(files, tmp_path / "second", cache_dir=cache)
    assert summary.cache_hits == 2
    first, second = TokenCorpus.load(tmp_path / "first"), TokenCorpus.load(tmp_path / "second")
    assert all(np.array_equal(a, b) for a, b in zip(first.tokens, second.tokens))


# ---- options and names ------------------------------------------------------------------------

REFERENCE = Path("outputs/bach-small-reference")


@pytest.mark.parametrize("args,named", [
    (["--bars", "nan"], "--bars nan"),
    (["--bars", "inf"], "--bars inf"),
    (["--seconds", "-3"], "--seconds -3"),
    (["--primer-bars", "nan"], "--primer-bars nan"),
    (["--bpm", "0"], "--bpm 0"),
    (["--program", "200"], "--program 200"),
    (["--num", "20000000"], "--num 2e+07"),
    (["--tokens", "10000000"], "--no-ceiling"),
    (["--bars", "5000"], "--no-ceiling"),
])
def test_generate_options_out_of_range_are_one_line_and_write_nothing(tmp_path, args, named):
    one_error(invoke("generate", REFERENCE, "--epoch", "150", *args, "--out", tmp_path / "out"), named)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args,named", [
    (["--bars", "nan"], "--bars nan"),
    (["--primer-bars", "-1"], "--primer-bars -1"),
    (["--samples", "5000"], "--no-ceiling"),
    (["--num", "8", "--samples", "4"], "--num 8"),
])
def test_compare_options_out_of_range_are_one_line(tmp_path, args, named):
    one_error(invoke("compare", REFERENCE, "--epochs", "100,150", *args, "--out", tmp_path / "page"), named)
    assert not (tmp_path / "page").exists()


def test_no_ceiling_lifts_the_ceiling(tmp_path):
    # 2 tokens, the fewest a note takes: 1001 samples of 8 spent half a minute in the finishing search
    result = invoke("generate", REFERENCE, "--epoch", "150", "--num", "1001", "--tokens", "2", "--no-ceiling", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert len(list(tmp_path.glob("*.mid"))) == 1001


@pytest.mark.parametrize("stem", ["a" * 240, b"chorale-\xff\xfe-bad".decode("utf-8", "surrogateescape")])
def test_primers_with_long_or_undecodable_names_give_short_readable_files(tmp_path, run, chorale_files, stem):
    primer = tmp_path / f"{stem}.mid"
    shutil.copy(chorale_files[0], primer)
    result = invoke("generate", run, "--epoch", "2", "--tokens", "20", "--primer", primer, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    (written,) = (tmp_path / "out").glob("*.mid")
    assert len(written.name.encode()) < 200 and written.name.isprintable()
    written.name.encode("utf-8")  # no surrogates: every name written is valid UTF-8
    page = invoke("compare", run, "--epochs", "1,2", "--primer", primer, "--samples", "2", "--num", "1", "--bars", "1",
                  "--out", tmp_path / "page")
    assert page.exit_code == 0, page.output
    names = [p.name for p in (tmp_path / "page").iterdir()]
    assert names and all(len(n.encode()) < 200 for n in names)
    for name in names:
        name.encode("utf-8")

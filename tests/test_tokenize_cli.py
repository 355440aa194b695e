"""`composer tokenize`: bad input, the summary, the files written, the cache, the split."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from composer.cli import app
from composer.corpus import read_piece, write_midi
from composer.dataset import TokenCorpus, assign_splits, long_shared_spans, shared_windows, window_set
from composer.tokens import Note, TokenizerConfig, Vocabulary, decode_tokens, encode_notes, is_grammatical

SKIPPED = re.compile(r"^skipped (.+?): (.+)$")
FILES = re.compile(r"files read: (\d+)\s+skipped: (\d+)\s+cached: (\d+)")
PIECES = re.compile(
    r"pieces: (\d+) \(train (\d+), validation (\d+)\)\s+tokens: ([\d,]+)\s+notes: ([\d,]+)\s+vocabulary used: (\d+)/(\d+)"
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path / "xdg-cache"


def tokenize(*args: str | Path, expect: int = 0):
    result = CliRunner().invoke(app, ["tokenize", *map(str, args)])
    assert "Traceback" not in result.output
    assert result.exit_code == expect, result.output
    return result


def summary(output: str) -> dict:
    files = FILES.search(output)
    pieces = PIECES.search(output)
    assert files and pieces, output
    f, p = [int(x) for x in files.groups()], [int(x.replace(",", "")) for x in pieces.groups()]
    return dict(zip(["files", "skipped", "cached"], f)) | dict(
        zip(["pieces", "train", "validation", "tokens", "notes", "used", "size"], p)
    )


def splits(out: Path) -> dict[str, str]:
    return {p.hash: p.split for p in TokenCorpus.load(out).pieces}


# ---- bad input ------------------------------------------------------------------------------------


def test_bad_files_are_skipped_with_one_line_reasons(good_and_bad, tmp_path):
    folder, expected, good = good_and_bad
    result = tokenize(folder, "--out", tmp_path / "tok", "--jobs", "1")
    reasons = {}
    for line in result.output.splitlines():
        match = SKIPPED.match(line)
        if match:
            reasons[Path(match.group(1)).name] = match.group(2)
    assert set(reasons) == set(expected), result.output
    wrong = [f"{name}: {reasons[name]!r} does not say {want!r}" for name, want in expected.items() if want.lower() not in reasons[name].lower()]
    assert not wrong, "\n".join(wrong)
    s = summary(result.output)
    assert s["files"] == len(expected) + len(good) and s["skipped"] == len(expected) and s["pieces"] == len(good)
    corpus = TokenCorpus.load(tmp_path / "tok")
    assert sorted(p.name for p in corpus.pieces) == sorted(Path(g).stem for g in good)
    assert {Path(r["source"]).name: r["reason"] for r in corpus.skipped} == reasons


def test_only_bad_files_is_an_error(bad_files, tmp_path):
    result = tokenize(tmp_path / "bad", "--out", tmp_path / "tok", "--jobs", "1", expect=1)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no usable music" in errors[0], result.output
    assert not (tmp_path / "tok" / "corpus.json").exists()


def test_missing_path_is_an_error_naming_it(tmp_path):
    missing = tmp_path / "no-such-folder"
    result = tokenize(missing, "--out", tmp_path / "tok", expect=1)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(missing) in errors[0], result.output


def test_folder_without_music_files_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    result = tokenize(tmp_path / "empty", "--out", tmp_path / "tok", expect=1)
    assert "error:" in result.output and "no music files" in result.output


def test_size_limit_option(chorale_files, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    small, big = sorted(chorale_files[:20], key=lambda p: p.stat().st_size)[:: 19]
    shutil.copy(small, folder)
    shutil.copy(big, folder)
    limit_mb = (small.stat().st_size + 10) / 1e6
    result = tokenize(folder, "--out", tmp_path / "tok", "--jobs", "1", "--max-mb", f"{limit_mb:.6f}")
    assert re.search(rf"skipped .*{re.escape(big.name)}: .*size limit", result.output), result.output
    assert summary(result.output)["pieces"] == 1


# ---- summary, files, cache ------------------------------------------------------------------------


@pytest.fixture
def ten_chorales(tmp_path, chorale_files) -> Path:
    folder = tmp_path / "ten"
    folder.mkdir()
    for path in chorale_files[100:110]:
        shutil.copy(path, folder)
    return folder


def test_summary_matches_the_written_corpus(ten_chorales, tmp_path):
    out = tmp_path / "tok"
    result = tokenize(ten_chorales, "--out", out, "--jobs", "1")
    s = summary(result.output)
    written = [Path(line.removeprefix("wrote ")) for line in result.output.splitlines() if line.startswith("wrote ")]
    assert sorted(p.name for p in written) == ["corpus.json", "tokens.npz", "vocab.json"]
    assert all(p.exists() for p in written)
    corpus = TokenCorpus.load(out)
    vocab = corpus.vocab
    assert vocab == Vocabulary(TokenizerConfig())
    assert s["files"] == 10 and s["skipped"] == 0 and s["pieces"] == len(corpus.pieces) == 10
    assert s["tokens"] == sum(len(t) for t in corpus.tokens)
    assert s["notes"] == sum(p.notes for p in corpus.pieces)
    assert s["train"] + s["validation"] == 10
    assert s["train"] == len(corpus.split("train")) and s["validation"] == len(corpus.split("validation"))
    assert s["size"] == len(vocab)
    assert s["used"] == len(np.unique(np.concatenate(corpus.tokens)))
    for record, tokens in zip(corpus.pieces, corpus.tokens):
        assert record.tokens == len(tokens) and is_grammatical(tokens, vocab)
        piece = read_piece(Path(record.source))
        np.testing.assert_array_equal(tokens, encode_notes(piece.notes, vocab))
        # unison doublings (same pitch, same onset in two parts) merge into one note
        assert record.notes == len(decode_tokens(tokens, vocab)) <= len(piece.notes)
        assert record.key == piece.key and record.time_signature == piece.time_signature


def test_vocabulary_file_depends_only_on_the_configuration(chorale_files, ten_chorales, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(chorale_files[0], other)
    tokenize(ten_chorales, "--out", tmp_path / "a", "--jobs", "1")
    tokenize(other, "--out", tmp_path / "b", "--jobs", "1")
    a, b = (json.loads((tmp_path / d / "vocab.json").read_text()) for d in "ab")
    assert a == b == json.loads(json.dumps(Vocabulary(TokenizerConfig()).to_dict()))


def test_velocity_bins_option(ten_chorales, tmp_path):
    tokenize(ten_chorales, "--out", tmp_path / "tok", "--jobs", "1", "--velocity-bins", "8")
    corpus = TokenCorpus.load(tmp_path / "tok")
    assert corpus.vocab.config.velocity_bins == 8
    kinds = corpus.vocab.kinds()
    assert all(np.count_nonzero(kinds[t] == 3) == corpus.pieces[i].notes for i, t in enumerate(corpus.tokens))


def test_cache_second_run_is_all_cached_and_no_cache_reads_again(ten_chorales, tmp_path, private_cache):
    first = summary(tokenize(ten_chorales, "--out", tmp_path / "t1", "--jobs", "1").output)
    assert first["cached"] == 0
    assert any(private_cache.joinpath("composer").rglob("*.npz"))
    second = summary(tokenize(ten_chorales, "--out", tmp_path / "t2", "--jobs", "1").output)
    assert second["cached"] == second["files"] == 10
    fresh = summary(tokenize(ten_chorales, "--out", tmp_path / "t3", "--jobs", "1", "--no-cache").output)
    assert fresh["cached"] == 0
    for d in ("t2", "t3"):
        assert (tmp_path / d / "tokens.npz").read_bytes() == (tmp_path / "t1" / "tokens.npz").read_bytes()
        assert splits(tmp_path / d) == splits(tmp_path / "t1")
    # the cache is keyed by content: a changed file is read again, a renamed one is not
    victim = sorted(ten_chorales.iterdir())[0]
    piece = read_piece(victim)
    write_midi(piece.notes[:-1], victim, bpm=piece.tempo)
    sorted(ten_chorales.iterdir())[1].rename(ten_chorales / "renamed.mid")
    assert summary(tokenize(ten_chorales, "--out", tmp_path / "t4", "--jobs", "1").output)["cached"] == 9
    # the configuration is part of the key
    assert summary(tokenize(ten_chorales, "--out", tmp_path / "t5", "--jobs", "1", "--velocity-bins", "4").output)["cached"] == 0


def test_bad_files_are_cached_too(good_and_bad, tmp_path):
    folder, expected, good = good_and_bad
    tokenize(folder, "--out", tmp_path / "t1", "--jobs", "1")
    result = tokenize(folder, "--out", tmp_path / "t2", "--jobs", "1")
    s = summary(result.output)
    # empty and oversized files are skipped from os.stat alone, before any read: nothing to cache
    screened = {name for name, reason in expected.items() if reason in ("empty file", "size limit")}
    assert screened == {"empty.mid", "too_big.mid"}
    assert s["files"] == len(expected) + len(good) and s["skipped"] == len(expected)
    assert s["cached"] == s["files"] - len(screened)


def test_parallel_jobs_give_the_same_corpus(ten_chorales, tmp_path):
    tokenize(ten_chorales, "--out", tmp_path / "serial", "--jobs", "1", "--no-cache")
    tokenize(ten_chorales, "--out", tmp_path / "parallel", "--jobs", "2", "--no-cache")
    for name in ("tokens.npz", "corpus.json", "vocab.json"):
        assert (tmp_path / "serial" / name).read_bytes() == (tmp_path / "parallel" / name).read_bytes(), name


# ---- the split ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_corpus(tmp_path_factory, chorale_files):
    """The whole bundled corpus, tokenized once for this module (the cache makes later runs cheap)."""
    base = tmp_path_factory.mktemp("full")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(base / "xdg-cache"))
        result = tokenize(chorale_files[0].parent, "--out", base / "tok", "--jobs", "1")
    return base, result.output


def test_full_corpus_split_is_about_ten_percent(full_corpus, chorale_files):
    base, output = full_corpus
    s = summary(output)
    assert s["files"] == s["pieces"] == len(chorale_files) and s["skipped"] == 0
    share = s["validation"] / s["pieces"]
    assert 0.04 <= share <= 0.16, share
    corpus = TokenCorpus.load(base / "tok")
    assert {p.split for p in corpus.pieces} == {"train", "validation"}


def test_split_is_deterministic_and_ignores_names_and_order(full_corpus, chorale_files, tmp_path, monkeypatch):
    base, _ = full_corpus
    monkeypatch.setenv("XDG_CACHE_HOME", str(base / "xdg-cache"))
    again = tmp_path / "again"
    tokenize(chorale_files[0].parent, "--out", again, "--jobs", "1")
    assert splits(again) == splits(base / "tok")
    assert (again / "tokens.npz").read_bytes() == (base / "tok" / "tokens.npz").read_bytes()
    # the same files under other names, in another order: every piece keeps its side
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for i, path in enumerate(reversed(chorale_files)):
        shutil.copy(path, renamed / f"piece{i:03d}.mid")
    tokenize(renamed, "--out", tmp_path / "renamed-tok", "--jobs", "1")
    assert splits(tmp_path / "renamed-tok") == splits(base / "tok")


def test_near_duplicates_land_on_the_same_side(full_corpus, chorale_files, tmp_path, monkeypatch):
    base, _ = full_corpus
    monkeypatch.setenv("XDG_CACHE_HOME", str(base / "xdg-cache"))
    corpus = TokenCorpus.load(base / "tok")
    # a validation piece, so that copies whose own hash says "train" (about 90 %) would show a leak
    original = next(Path(p.source) for p in corpus.pieces if p.split == "validation")
    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copy(original, extra / "exact_copy.mid")
    piece = read_piece(original)
    write_midi(piece.notes, extra / "other_tempo.mid", bpm=piece.tempo * 0.75)  # other bytes, same tokens
    write_midi(piece.notes[:-8], extra / "shorter.mid", bpm=piece.tempo)  # the last notes missing
    changed = list(piece.notes)
    changed[len(changed) // 2] = Note(changed[len(changed) // 2].pitch + 1, changed[len(changed) // 2].start, changed[len(changed) // 2].duration)
    write_midi(changed, extra / "one_note_changed.mid", bpm=piece.tempo)
    out = tmp_path / "tok"
    tokenize(chorale_files[0].parent, extra, "--out", out, "--jobs", "1")
    records = TokenCorpus.load(out).pieces
    sides = {p.name: p.split for p in records if p.name in {original.stem, "exact_copy", "other_tempo", "shorter", "one_note_changed"}}
    assert len(sides) == 5 and len(set(sides.values())) == 1, sides


def test_assign_splits_keeps_near_duplicates_together_and_ignores_order():
    rng = np.random.default_rng(0)
    a = rng.integers(3, 140, 300).astype(np.int32)
    a_variant = a.copy()
    a_variant[150] = 141  # shares 94 % of its 16-token windows with a
    others = [rng.integers(3, 140, 300).astype(np.int32) for _ in range(18)]
    # a's hash comes first, its variant's last: split apart unless they are grouped
    hashes = ["0" * 64, "f" * 64] + [f"{0xF0000000 + i:08x}" + "0" * 56 for i in range(18)]
    tokens = [a, a_variant] + others
    sides = assign_splits(tokens, hashes, 0.1)
    assert sides[0] == sides[1] == "validation"
    assert sides.count("validation") == 2, sides
    order = list(rng.permutation(len(tokens)))
    shuffled = assign_splits([tokens[i] for i in order], [hashes[i] for i in order], 0.1)
    assert {hashes[i]: side for i, side in zip(order, shuffled)} == dict(zip(hashes, sides))
    assert assign_splits(tokens, hashes, 0.0) == ["train"] * len(tokens)


def test_assign_splits_groups_pieces_that_share_a_long_span():
    rng = np.random.default_rng(1)
    melody = rng.integers(3, 140, 300).astype(np.int32)
    reused = rng.integers(3, 140, 300).astype(np.int32)
    reused[100:220] = melody[:120]  # 40 % of its tokens, but only ~37 % of its 16-token windows
    glimpse = rng.integers(3, 140, 300).astype(np.int32)
    glimpse[100:160] = melody[150:210]  # a 60-token quote: 20 %, below the 30 % that groups
    others = [rng.integers(3, 140, 300).astype(np.int32) for _ in range(27)]
    tokens = [melody, reused, glimpse] + others
    windows = [window_set(t) for t in tokens]
    assert shared_windows(windows)[0, 1] < 0.5 * min(len(windows[0]), len(windows[1]))  # the old rule misses it
    hashes = ["0" * 64, "f" * 64, "e" * 64] + [f"{0xA0000000 + i:08x}" + "0" * 56 for i in range(27)]
    sides = assign_splits(tokens, hashes, 0.1)
    assert sides[0] == sides[1] == "validation"
    assert sides[2] == "train"
    assert long_shared_spans(tokens) == [(0, 1)]


# ---- files of several tunes (issue 19) ----------------------------------------------------------------

THREE_TUNES = """X:1
T:First tune
M:3/4
L:1/8
K:G
GA B2 d2 | c2 B2 A2 | G6 |]

X:2
T:Second tune
M:6/8
L:1/8
K:D
DFA dfa | afd AFD | D3 D3 |]

X:3
T:Third tune
M:2/4
L:1/8
K:F
FA cA | fc AF | F4 |]

X:4
T:Only rests
M:4/4
L:1/4
K:C
z4 | z4 |]
"""


def test_a_file_of_several_tunes_gives_one_piece_per_tune(tmp_path):
    """Three tunes (and one of rests only) in one ABC file: three pieces, each with its own metre
    and key, and the fourth skipped with its own reason. They were one piece of every tune."""
    source = tmp_path / "folk" / "tunes.abc"
    source.parent.mkdir()
    source.write_text(THREE_TUNES)
    out = tmp_path / "tokens"
    result = tokenize(source, "--out", out, "--validation", "0", "--jobs", "1")
    assert summary(result.output)["pieces"] == 3
    assert result.output.splitlines()[0].strip(), "no blank first line (the progress bar's, off a terminal)"
    assert f"skipped {source} (tune 4): no notes" in result.output
    corpus = TokenCorpus.load(out)
    pieces = {p.name: p for p in corpus.pieces}
    assert sorted(pieces) == ["tunes-1", "tunes-2", "tunes-3"]
    assert [pieces[f"tunes-{n}"].time_signature for n in (1, 2, 3)] == ["3/4", "6/8", "2/4"]
    assert [pieces[f"tunes-{n}"].key for n in (1, 2, 3)] == ["G major", "D major", "F major"]
    assert len({p.hash for p in corpus.pieces}) == 3, "each tune is its own piece for the split"
    first = decode_tokens(corpus.tokens[[p.name for p in corpus.pieces].index("tunes-1")], corpus.vocab)
    assert [n.pitch for n in first][:4] == [67, 69, 71, 74], "tune 1 starts as written (G A B d), at 0"
    again = tokenize(source, "--out", tmp_path / "again", "--validation", "0", "--jobs", "1")
    assert summary(again.output)["cached"] == 1 and summary(again.output)["pieces"] == 3, "the cache keeps every tune"
    assert f"skipped {source} (tune 4): no notes" in again.output


def test_corpus_export_never_overwrites_and_names_work_and_movement(tmp_path, monkeypatch):
    """Movements of the same name in different works (mozart/k155/movement1, mozart/k156/movement1)
    overwrote each other: 14 reported, 5 on disk. Now each has its own file, a work of several tunes
    one file per tune, and nothing already in DEST is replaced."""
    from music21 import corpus

    import composer.corpus

    works = [str(corpus.getWork(name)) for name in ("mozart/k155/movement1.mxl", "mozart/k156/movement1.mxl", "essenFolksong/teste.abc")]
    monkeypatch.setattr(composer.corpus, "collection_works", lambda name: works)  # a small "mozart"
    dest = tmp_path / "midi"
    dest.mkdir()
    (dest / "teste-2.mid").write_bytes(b"the user's own file")
    first = CliRunner().invoke(app, ["corpus", "export", "mozart", str(dest), "--jobs", "1", "--verbose"])
    assert first.exit_code == 0, first.output
    expected = ["k155_movement1.mid", "k156_movement1.mid", *(f"teste-{n}.mid" for n in range(1, 9))]
    assert sorted(p.name for p in dest.iterdir()) == expected
    assert (dest / "teste-2.mid").read_bytes() == b"the user's own file"
    lines = first.output.splitlines()
    assert lines[-1] == f"wrote 9 MIDI files to {dest}; 1 already there, left as they were"
    assert sorted(line for line in lines if line.startswith("wrote /")) == sorted(f"wrote {dest / n}" for n in expected if n != "teste-2.mid")
    assert f"kept {dest / 'teste-2.mid'} (already there)" in lines
    assert read_piece(dest / "k155_movement1.mid").notes != read_piece(dest / "k156_movement1.mid").notes
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    again = CliRunner().invoke(app, ["corpus", "export", "mozart", str(dest), "--jobs", "1"])
    assert again.output.splitlines() == [f"wrote 0 MIDI files to {dest}; 10 already there, left as they were"]
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before

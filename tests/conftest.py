"""Shared fixtures: the bundled chorales, a small MIDI writer, a folder of bad input files, a tiny
corpus and a tiny run trained once for every module that reads them; and the fast tier's guard: a run that selects no test marked ``tensorflow`` cannot import it."""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import pytest

CHORALES = Path(__file__).resolve().parent.parent / "midi_data" / "bach_chorales"
FAST_TIER = Path(__file__).resolve().parent / "fast_tier"


# ---- the fast tier: `-m "not tensorflow"` runs without TensorFlow, and proves it -------------------

REFUSALS: list[Path] = []  # the log of refused imports, where this run refuses them


@pytest.hookimpl(trylast=True)  # after -m has deselected what it deselects
def pytest_collection_modifyitems(session, config, items):
    """Where no selected test is marked ``tensorflow``, TensorFlow and Keras are refused in this
    process and in every Python subprocess (see fast_tier/sitecustomize.py), and a test that
    tries to import them fails: an unmarked test that needs TensorFlow cannot hide."""
    if not items or any(item.get_closest_marker("tensorflow") for item in items):
        return
    if any(name.partition(".")[0] in ("tensorflow", "keras") for name in sys.modules):
        raise pytest.UsageError("TensorFlow was imported while collecting: a test module imports it at the top")
    spec = importlib.util.spec_from_file_location("fast_tier_refusal", FAST_TIER / "sitecustomize.py")
    refusal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refusal)
    handle, log = tempfile.mkstemp(prefix="composer-refused-imports-", suffix=".log")
    os.close(handle)
    REFUSALS.append(Path(log))
    os.environ[refusal.LOG] = log
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAST_TIER), os.environ.get("PYTHONPATH")]))
    sys.meta_path.insert(0, refusal.RefuseTensorFlow())


def pytest_unconfigure(config):
    for log in REFUSALS:
        log.unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def _no_tensorflow_unless_marked():
    """Fails a test that tried to import TensorFlow where it is refused, even if the code under
    test caught the ImportError or the import happened in a subprocess."""
    if not REFUSALS:
        yield
        return
    before = REFUSALS[0].stat().st_size
    yield
    with REFUSALS[0].open() as log:
        log.seek(before)
        refused = log.read().split()
    if refused:
        pytest.fail(f"imports {', '.join(sorted(set(refused[1::2])))} but is not marked tensorflow", pytrace=False)


@pytest.fixture(autouse=True, scope="session")
def _own_user_cache(tmp_path_factory):
    """The tests' tokenized files and bits per note go to a cache of this session, never to the
    user's (~/.cache/composer): a test run leaves nothing behind and finds nothing from before."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if before is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(scope="session")
def chorale_files() -> list[Path]:
    files = sorted(CHORALES.glob("*.mid"))
    assert len(files) > 300, f"bundled corpus missing from {CHORALES}"
    return files


@pytest.fixture
def make_midi():
    """make_midi(path, notes=[(pitch, start_s, end_s)], drums=[...], tempo=120, resolution=220)."""

    def make(path: Path, notes=((60, 0.0, 0.5),), drums=(), tempo: float = 120.0, resolution: int = 220) -> Path:
        import pretty_midi

        midi = pretty_midi.PrettyMIDI(resolution=resolution, initial_tempo=tempo)
        for is_drum, triples in ((False, notes), (True, drums)):
            if triples or (not is_drum and not drums):
                inst = pretty_midi.Instrument(program=0, is_drum=is_drum)
                inst.notes.extend(pretty_midi.Note(90, p, s, e) for p, s, e in triples)
                midi.instruments.append(inst)
        midi.write(str(path))
        return path

    return make


@pytest.fixture
def bad_files(tmp_path, make_midi, chorale_files) -> dict[str, str]:
    """Write one file per kind of bad input into tmp_path/bad; returns {file name: expected reason part}.

    0.01 bpm cannot be written (a MIDI tempo is at most 0xFFFFFF µs per beat, about 3.6 bpm),
    and a resolution above 32767 does not fit the header, so the absurd cases are 1e6 bpm,
    5 bpm and a header division of 0 ticks per quarter.
    """
    folder = tmp_path / "bad"
    folder.mkdir()
    real = chorale_files[0].read_bytes()
    (folder / "empty.mid").write_bytes(b"")
    (folder / "random_bytes.mid").write_bytes(b"\x00" + random.Random(0).randbytes(3000))
    (folder / "truncated.mid").write_bytes(real[: len(real) // 2])
    (folder / "text.mid").write_text("This is a text file, not a MIDI file.\n")
    make_midi(folder / "no_notes.mid", notes=())
    make_midi(folder / "drums_only.mid", notes=(), drums=[(36, 0.0, 0.25), (38, 0.5, 0.75)])
    (folder / "zero_resolution.mid").write_bytes(real[:12] + struct.pack(">h", 0) + real[14:])
    make_midi(folder / "fast_tempo.mid", tempo=1e6)
    make_midi(folder / "slow_tempo.mid", tempo=5.0)
    # a real MIDI file padded past the default 10 MB limit with an (ignorable) unknown chunk
    padding = 10_500_000
    (folder / "too_big.mid").write_bytes(real + b"XPAD" + struct.pack(">I", padding) + bytes(padding))
    return {
        "empty.mid": "empty file",
        "random_bytes.mid": "no MThd header",
        "truncated.mid": "damaged MIDI",
        "text.mid": "no MThd header",
        "no_notes.mid": "no notes",
        "drums_only.mid": "drums only",
        "zero_resolution.mid": "resolution",
        "fast_tempo.mid": "tempo",
        "slow_tempo.mid": "tempo",
        "too_big.mid": "size limit",
    }


@pytest.fixture
def good_and_bad(tmp_path, bad_files, chorale_files) -> tuple[Path, dict[str, str], list[str]]:
    """The bad folder plus three real chorales copied in: (folder, expected reasons, good names)."""
    folder = tmp_path / "bad"
    good = [f.name for f in chorale_files[1:4]]
    for name in good:
        shutil.copy(CHORALES / name, folder / name)
    return folder, bad_files, good


# ---- a corpus and a run, made once for every module (read-only: tests copy what they change) ---------


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """12 bundled chorales, tokenized (train_fixtures.make_corpus)."""
    from train_fixtures import make_corpus

    return make_corpus(tmp_path_factory.mktemp("corpus") / "tokens")


@pytest.fixture(scope="session")
def run(tmp_path_factory, corpus) -> Path:
    """A tiny run of ``corpus``: 2 epochs, kept 1 and 2."""
    from train_fixtures import train_cli

    root = tmp_path_factory.mktemp("runs") / "run"
    train_cli(corpus, root, "--epochs", "2", "--save-at", "1,2")
    return root

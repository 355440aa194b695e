"""Shared fixtures: the bundled chorales, a small MIDI writer, and a folder of bad input files."""

from __future__ import annotations

import random
import shutil
import struct
import sys
from pathlib import Path

import pytest

CHORALES = Path(__file__).resolve().parent.parent / "midi_data" / "bach_chorales"

# Test modules that train or build Keras models. Every other module is the fast tier
# (`pytest -m "not slow and not tensorflow"`), which checks at its end that it really ran
# without importing TensorFlow, so a module missing from this list cannot hide there.
NEEDS_TENSORFLOW = {
    "test_checkpoints", "test_compare", "test_ctrl_c", "test_generate", "test_interrupt", "test_multiworker",
    "test_run_safety", "test_schedule", "test_tampered", "test_train",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in NEEDS_TENSORFLOW:
            item.add_marker(pytest.mark.tensorflow)


def pytest_sessionfinish(session, exitstatus):
    if "not tensorflow" in (session.config.option.markexpr or "") and "tensorflow" in sys.modules:
        session.config.get_terminal_writer().line("error: the fast tier imported TensorFlow; add the module to NEEDS_TENSORFLOW", red=True)
        session.exitstatus = 1


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

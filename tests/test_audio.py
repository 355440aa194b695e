"""MIDI → WAV on both synthesizers: format, length, loudness, errors, a real chorale."""

from __future__ import annotations

import sys
import warnings
import wave
from pathlib import Path

import numpy as np
import pytest

from composer import ComposerError, audio
from composer.corpus import write_midi
from composer.tokens import Note

CHORALES = Path(__file__).resolve().parent.parent / "midi_data" / "bach_chorales"
C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72]
FULL_SCALE = 32767
TARGET_PEAK = FULL_SCALE * 10 ** (audio.PEAK_DBFS / 20)
# Note times pass through MIDI ticks (220 per quarter, 1/440 s at 120 bpm) and whole samples;
# the length is otherwise exact by construction, so 10 ms is a generous tolerance.
LENGTH_TOLERANCE_S = 0.01


def fluidsynth_loads() -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", audio.SynthesizerFallback)
        return audio.load_fluidsynth() is not None


needs_fluidsynth = pytest.mark.skipif(not fluidsynth_loads(), reason="pyfluidsynth or libfluidsynth missing")


@pytest.fixture
def no_fluidsynth(monkeypatch):
    """Make `import fluidsynth` fail, as on a machine without libfluidsynth."""
    import pretty_midi  # noqa: F401  imported first, so its own fluidsynth check saw the real module

    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # None in sys.modules: the import raises
    audio.load_fluidsynth.cache_clear()
    yield
    audio.load_fluidsynth.cache_clear()


@pytest.fixture(params=["fluidsynth", "numpy"])
def synthesizer(request) -> str:
    if request.param == "fluidsynth":
        if not fluidsynth_loads():
            pytest.skip("pyfluidsynth or libfluidsynth missing")
    else:
        request.getfixturevalue("no_fluidsynth")
    return request.param


@pytest.fixture
def scale_midi(tmp_path) -> Path:
    """C major scale in quarters at 120 bpm: 8 notes, 4 seconds."""
    notes = [Note(pitch, float(i), 1.0, 90) for i, pitch in enumerate(C_MAJOR)]
    return write_midi(notes, tmp_path / "scale.mid", bpm=120.0)


def read_wav(path: Path) -> tuple[tuple, np.ndarray]:
    """The file's wave parameters and its samples as (frames, channels) floats."""
    with wave.open(str(path), "rb") as f:
        params = f.getparams()
        samples = np.frombuffer(f.readframes(params.nframes), dtype="<i2")
    return params, samples.reshape(-1, params.nchannels).astype(np.float64)


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


@pytest.mark.filterwarnings("ignore::composer.audio.SynthesizerFallback")
def test_scale_renders_as_normalized_pcm16(scale_midi, tmp_path, synthesizer):
    """With FluidSynth this plays through the default soundfont (pretty_midi's bundled one)."""
    wav = tmp_path / "out" / "scale.wav"
    rendering = audio.render_wav(scale_midi, wav)

    assert (rendering.path, rendering.synthesizer) == (wav, synthesizer)
    params, samples = read_wav(wav)
    assert params.framerate == 44100 and params.sampwidth == 2 and params.nchannels == 1
    assert rendering.seconds == pytest.approx(params.nframes / params.framerate)
    assert rendering.seconds == pytest.approx(4.0 + audio.TAIL_SECONDS, abs=LENGTH_TOLERANCE_S)
    peak = np.abs(samples).max()
    assert peak < FULL_SCALE and abs(peak - TARGET_PEAK) <= 1  # normalized to -1 dBFS, no clipping
    # every half second of the scale sounds, well above silence (-40 dBFS)
    for beat in range(8):
        assert rms(samples[beat * 22050 : (beat + 1) * 22050]) > 0.01 * FULL_SCALE, f"beat {beat} silent"
    assert [p.name for p in wav.parent.iterdir()] == ["scale.wav"]  # no temporary file left behind


def test_fallback_warns_once_and_renders_with_numpy(scale_midi, tmp_path, no_fluidsynth):
    with pytest.warns(audio.SynthesizerFallback, match="numpy"):
        first = audio.render_wav(scale_midi, tmp_path / "a.wav")
    with warnings.catch_warnings():
        warnings.simplefilter("error", audio.SynthesizerFallback)
        second = audio.render_wav(scale_midi, tmp_path / "b.wav")
    assert first.synthesizer == second.synthesizer == "numpy"


@pytest.mark.filterwarnings("ignore::composer.audio.SynthesizerFallback")
def test_numpy_tone_has_the_note_pitch(tmp_path, no_fluidsynth):
    midi = write_midi([Note(69, 0.0, 2.0, 100)], tmp_path / "a4.mid")  # A4 = 440 Hz for 1 s
    audio.render_wav(midi, tmp_path / "a4.wav")
    _, samples = read_wav(tmp_path / "a4.wav")
    spectrum = np.abs(np.fft.rfft(samples[:44100, 0]))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)  # 1 s of signal: bins are 1 Hz apart


@pytest.mark.filterwarnings("ignore::composer.audio.SynthesizerFallback")
def test_piece_without_notes_is_a_short_silence(tmp_path, synthesizer):
    midi = write_midi([], tmp_path / "empty.mid")
    rendering = audio.render_wav(midi, tmp_path / "empty.wav")
    _, samples = read_wav(rendering.path)
    assert rendering.seconds == pytest.approx(audio.TAIL_SECONDS)
    assert not samples.any()


def test_missing_soundfont_is_an_error_naming_the_file(scale_midi, tmp_path):
    missing = tmp_path / "nowhere" / "Grand Piano.sf2"
    with pytest.raises(ComposerError, match="Grand Piano.sf2") as error:
        audio.render_wav(scale_midi, tmp_path / "x.wav", soundfont=missing)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "x.wav").exists()


@needs_fluidsynth
def test_unloadable_soundfont_is_an_error_naming_the_file(scale_midi, tmp_path):
    bogus = tmp_path / "bogus.sf2"
    bogus.write_bytes(b"not a soundfont")
    with pytest.raises(ComposerError, match="bogus.sf2"):
        audio.render_wav(scale_midi, tmp_path / "x.wav", soundfont=bogus)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bogus.sf2", "scale.mid"]


def test_unreadable_midi_is_an_error_naming_the_file(tmp_path):
    damaged = tmp_path / "damaged.mid"
    damaged.write_bytes(b"MThd garbage")
    with pytest.raises(ComposerError, match="damaged.mid"):
        audio.render_wav(damaged, tmp_path / "x.wav")


@pytest.mark.filterwarnings("ignore::composer.audio.SynthesizerFallback")
def test_bach_chorale_renders_audibly(tmp_path, synthesizer):
    chorale = CHORALES / "bwv101_7.mid"
    rendering = audio.render_wav(chorale, tmp_path / "chorale.wav")
    _, samples = read_wav(rendering.path)
    assert rendering.synthesizer == synthesizer
    assert rendering.seconds == pytest.approx(24.0 + audio.TAIL_SECONDS, abs=LENGTH_TOLERANCE_S)
    assert rms(samples) > 0.03 * FULL_SCALE


@pytest.mark.filterwarnings("ignore::composer.audio.SynthesizerFallback")
def test_numpy_fallback_plays_the_drums_the_same_every_time(tmp_path, no_fluidsynth):
    drums = [Note(key, i * 0.5, 0.25, 100, 0, True) for i, key in enumerate((36, 38, 42, 36, 38, 49))]
    midi = write_midi(drums, tmp_path / "drums.mid")
    first, second = audio.render_wav(midi, tmp_path / "a.wav"), audio.render_wav(midi, tmp_path / "b.wav")
    _, samples = read_wav(first.path)
    assert rms(samples) > 100, "drums without FluidSynth are heard"
    assert first.path.read_bytes() == second.path.read_bytes()
    # each stroke sounds where it is struck (120 bpm: a hit every 0.25 s): the tenth of a second
    # after the third hit is louder than the tenth before it
    rate = 44100
    assert rms(samples[int(0.5 * rate) : int(0.6 * rate)]) > 2 * rms(samples[int(0.4 * rate) : int(0.5 * rate)])

"""MIDI → WAV, so that generated samples can be judged by ear next to the numbers.

FluidSynth with a General MIDI soundfont (pretty_midi's bundled TimGM6mb.sf2 unless another is
given) plays each track with the instrument its program names; it is used whenever pyfluidsynth
and the libfluidsynth it wraps can be loaded. Where they cannot (a machine without the system
library), a small additive synthesizer in numpy plays the notes instead, so that a comparison
page always has audio. The fallback is announced once per process by a ``SynthesizerFallback``
warning, and every ``Rendering`` records which synthesizer produced it.

Both paths write the same kind of file: 16-bit PCM mono WAV, peak-normalized to -1 dBFS, lasting
until ``TAIL_SECONDS`` after the last note ends, written atomically.
"""

from __future__ import annotations

import functools
import warnings
import wave
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from composer import ComposerError
from composer.storage import atomic_path

TAIL_SECONDS = 1.0  # room for releases and reverb after the last note (pretty_midi renders 1 s too)
FADE_SECONDS = 0.05  # a fade at the very end, so that cutting a longer reverb tail does not click
PEAK_DBFS = -1.0  # headroom below full scale, so that no converter downstream clips
DEFAULT_SOUNDFONT = "TimGM6mb.sf2"  # General MIDI, shipped inside the pretty_midi package


@dataclass
class Rendering:
    """A written WAV file: where it is, how long it plays, which synthesizer made it."""

    path: Path
    seconds: float
    synthesizer: str  # "fluidsynth" or "numpy"


class SynthesizerFallback(UserWarning):
    """FluidSynth could not be loaded; audio comes from the plainer numpy synthesizer."""


def default_soundfont() -> Path:
    """pretty_midi's bundled General MIDI soundfont."""
    from importlib.resources import files

    return Path(str(files("pretty_midi") / DEFAULT_SOUNDFONT))


def render_wav(
    midi_path: Path,
    wav_path: Path,
    soundfont: Path | None = None,
    sample_rate: int = 44100,
) -> Rendering:
    """Render a MIDI file to a WAV file with FluidSynth, or with numpy where FluidSynth is missing."""
    soundfont = Path(soundfont) if soundfont is not None else default_soundfont()
    # checked on both paths: a mistyped --soundfont is the user's error wherever it runs
    if not soundfont.is_file():
        raise ComposerError(f"{soundfont}: no such soundfont file")
    midi = load_midi(Path(midi_path))
    fluidsynth = load_fluidsynth()
    if fluidsynth is None:
        signal, synthesizer = synthesize_numpy(midi, sample_rate), "numpy"
    else:
        signal, synthesizer = synthesize_fluidsynth(fluidsynth, midi, soundfont, sample_rate), "fluidsynth"
    length = round((last_note_end(midi) + TAIL_SECONDS) * sample_rate)
    samples = to_pcm16(normalize(fade_out(fit_length(signal, length), round(FADE_SECONDS * sample_rate))))
    with atomic_path(Path(wav_path)) as tmp:
        write_wav(tmp, samples, sample_rate)
    return Rendering(Path(wav_path), len(samples) / sample_rate, synthesizer)


def load_midi(path: Path):
    """The file as a PrettyMIDI object (times in seconds, programs and drum flags kept)."""
    import pretty_midi

    try:
        with warnings.catch_warnings():
            # pretty_midi warns about harmless oddities (e.g. tempo events on a non-first track)
            warnings.simplefilter("ignore")
            return pretty_midi.PrettyMIDI(str(path))
    except Exception as error:  # mido and pretty_midi raise many types for missing or damaged files
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ComposerError(f"{path}: cannot read MIDI ({reason})") from None


@functools.cache  # cached so that the fallback warning is given once per process
def load_fluidsynth() -> ModuleType | None:
    """The pyfluidsynth module, or None (with a warning) where it or libfluidsynth cannot load."""
    try:
        import fluidsynth
    except Exception as error:  # ImportError without the library, OSError for a broken one, ...
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        warnings.warn(
            f"FluidSynth unavailable ({reason}); rendering WAV with the plain numpy synthesizer",
            SynthesizerFallback,
            stacklevel=3,
        )
        return None
    return fluidsynth


def last_note_end(midi) -> float:
    """Where the music ends: its last note, or a later end marker (a sample asked for 16 bars
    that closes on a rest still lasts 16 bars, see corpus.write_midi)."""
    notes = max((note.end for instrument in midi.instruments for note in instrument.notes), default=0.0)
    marks = max((c.time for instrument in midi.instruments for c in instrument.control_changes), default=0.0)
    return max(notes, marks)


def synthesize_fluidsynth(fluidsynth: ModuleType, midi, soundfont: Path, sample_rate: int) -> np.ndarray:
    """Mono float signal from FluidSynth, at its own (unnormalized) level."""
    # The synthesizer is built here rather than by pretty_midi so that a file FluidSynth cannot
    # load is an error; pretty_midi ignores sfload's -1 and renders silence.
    synth = fluidsynth.Synth(samplerate=float(sample_rate))
    try:
        sfid = synth.sfload(str(soundfont))
        if sfid < 0:
            raise ComposerError(f"{soundfont}: not a soundfont FluidSynth can load")
        # normalize=False: pretty_midi's own normalization divides by zero on a silent piece
        return midi.fluidsynth(fs=sample_rate, synthesizer=synth, sfid=sfid, normalize=False)
    finally:
        synth.delete()


# ---- the numpy fallback ----------------------------------------------------------------------

@dataclass(frozen=True)
class Timbre:
    partials: tuple[float, ...]  # amplitude of harmonic 1, 2, 3, ...
    attack: float  # seconds to full level
    decay: float  # time constant (s) of the fall from full level towards the sustain level
    sustain: float  # level held while the key is down, as a fraction of full
    release: float  # seconds from note-off to silence; at most TAIL_SECONDS


STRUCK = Timbre((1.0, 0.5, 0.3, 0.2, 0.12, 0.08), attack=0.005, decay=0.5, sustain=0.15, release=0.25)
SUSTAINED = Timbre((1.0, 0.6, 0.4, 0.25, 0.2, 0.15, 0.1, 0.08), attack=0.02, decay=0.1, sustain=0.85, release=0.1)
BOWED = Timbre(tuple(1.0 / k for k in range(1, 11)), attack=0.08, decay=0.3, sustain=0.8, release=0.3)
BLOWN = Timbre((1.0, 0.15, 0.4, 0.1, 0.25, 0.05, 0.12), attack=0.04, decay=0.2, sustain=0.8, release=0.15)

# General MIDI families (program // 8): piano, chromatic percussion, guitar and bass are struck or
# plucked; strings and ensembles bowed; brass, reed and pipe blown; the rest (organs, synths,
# effects) a plain sustained tone.
FAMILY_TIMBRES = {0: STRUCK, 1: STRUCK, 3: STRUCK, 4: STRUCK, 5: BOWED, 6: BOWED, 7: BLOWN, 8: BLOWN, 9: BLOWN}


def synthesize_numpy(midi, sample_rate: int) -> np.ndarray:
    """Mono float signal: one additive tone per note, one noise stroke per drum hit."""
    signal = np.zeros(round((last_note_end(midi) + TAIL_SECONDS) * sample_rate))
    for instrument in midi.instruments:
        timbre = FAMILY_TIMBRES.get(int(instrument.program) // 8, SUSTAINED)
        for note in instrument.notes:
            if instrument.is_drum:
                sound = stroke(note.pitch, note.velocity, sample_rate)
            else:
                sound = tone(note.pitch, note.velocity, note.end - note.start, timbre, sample_rate)
            start = round(note.start * sample_rate)
            signal[start : start + len(sound)] += sound[: len(signal) - start]
    return signal


BASS_DRUMS = (35, 36)
CYMBALS = (42, 44, 46, 49, 51, 52, 53, 55, 57, 59)  # hi-hats, crashes, rides: bright and short


def stroke(key: int, velocity: int, sample_rate: int) -> np.ndarray:
    """One General MIDI drum hit, whatever its written length: a bass drum as a falling low
    tone, a cymbal as bright noise, any other drum (snares, toms, hand drums) as noise. The
    noise is seeded by the key, so a sample renders the same every time."""
    gain = (velocity / 127) ** 2
    if key in BASS_DRUMS:
        t = np.arange(round(0.3 * sample_rate)) / sample_rate
        return gain * np.sin(2 * np.pi * (50 * t + 3 * (1 - np.exp(-t / 0.03)))) * np.exp(-t / 0.08)
    bright = key in CYMBALS
    t = np.arange(round((0.12 if bright else 0.2) * sample_rate)) / sample_rate
    noise = np.random.default_rng(key).uniform(-1.0, 1.0, len(t))
    if bright:
        noise = np.diff(noise, prepend=0.0) / 2  # a first difference: the hiss without the rumble
    return 0.5 * gain * noise * np.exp(-t / (0.03 if bright else 0.06))


def tone(pitch: int, velocity: int, seconds: float, timbre: Timbre, sample_rate: int) -> np.ndarray:
    """One note held for `seconds`, followed by its release."""
    frequency = 440.0 * 2.0 ** ((pitch - 69) / 12)
    t = np.arange(round((seconds + timbre.release) * sample_rate)) / sample_rate
    oscillation = np.zeros_like(t)
    for harmonic, amplitude in enumerate(timbre.partials, start=1):
        if harmonic * frequency < sample_rate / 2:  # partials above Nyquist would alias
            oscillation += amplitude * np.sin(2 * np.pi * harmonic * frequency * t)
    # velocity squared: roughly how MIDI velocity maps to loudness on real instruments
    gain = (velocity / 127) ** 2 / sum(timbre.partials)
    return gain * oscillation * envelope(t, seconds, timbre)


def envelope(t: np.ndarray, held: float, timbre: Timbre) -> np.ndarray:
    """ADSR level at times t for a key held `held` seconds; continuous, zero at the end."""
    released = np.clip(1.0 - (t - held) / timbre.release, 0.0, 1.0)
    return np.where(t < held, key_down_level(t, timbre), key_down_level(np.float64(held), timbre) * released)


def key_down_level(t: np.ndarray, timbre: Timbre) -> np.ndarray:
    """Attack ramp, then exponential decay towards the sustain level."""
    decay = timbre.sustain + (1.0 - timbre.sustain) * np.exp(-np.maximum(t - timbre.attack, 0.0) / timbre.decay)
    return np.minimum(t / timbre.attack, 1.0) * decay


# ---- finishing and writing -------------------------------------------------------------------

def fit_length(signal: np.ndarray, length: int) -> np.ndarray:
    """Cut or zero-pad to exactly `length` samples."""
    return np.pad(signal[:length], (0, max(0, length - len(signal))))


def fade_out(signal: np.ndarray, length: int) -> np.ndarray:
    faded = signal.astype(np.float64)
    length = min(length, len(faded))
    faded[len(faded) - length :] *= np.linspace(1.0, 0.0, length)
    return faded


def normalize(signal: np.ndarray, peak_dbfs: float = PEAK_DBFS) -> np.ndarray:
    """Scale so that the loudest sample sits at `peak_dbfs`; silence stays silence."""
    peak = np.abs(signal).max(initial=0.0)
    return signal * (10 ** (peak_dbfs / 20) / peak) if peak > 0 else signal


def to_pcm16(signal: np.ndarray) -> np.ndarray:
    """Floats in [-1, 1] → little-endian 16-bit integers (clipped only as a safeguard)."""
    return np.clip(np.round(signal * 32767), -32767, 32767).astype("<i2")


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(samples.tobytes())

"""Sampling: prime once, then one token per step with the LSTM state carried, under the grammar mask.

Every sample is valid music by construction: at each step only the tokens the grammar
allows can be drawn (a Duration follows a Pitch, pitches of a chord ascend, ...). Lengths are
honoured exactly:

* ``tokens=T``: T tokens after the primer, then EOS. Near the end, tokens after which the
  sample could not finish on a complete note in the tokens left are masked too.
* ``steps=S`` (from ``--bars`` or ``--seconds``): new onsets fill S grid steps after the
  primer; EOS is masked, and the first TimeShift that would reach the end closes the sample
  instead, so a sample is never shorter than asked (notes sounding past the end are cut
  when written).
* neither: until the model draws EOS, or ``cap`` tokens.

With ``max_voices``, no note starts while that many already sound (the corpus's voice ceiling
by default, see ``metrics.voice_ceiling``).

N samples advance together as one batch. Sample i draws from its own generator seeded by
(seed, i), so it is the same whatever the batch size. ``generate`` and ``compare`` both sample
through ``load_sampler`` and ``continue_primers``; ``check_settings`` is the one place where
sampling settings are checked.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from composer import ComposerError
from composer.config import PRIMER_BARS, SampleSettings, check_option, metre_problem
from composer.corpus import UnusableFile, read_piece, write_midi
from composer.dataset import TokenCorpus, corpus_voice_ceiling
from composer.metre import Change, bar_quarters, bars_end, changes_before, metre_at, metre_changes
from composer.model import LSTMStepper, load_weights
from composer.runs import Run
from composer.storage import safe_stem
from composer.tokens import BOS, EOS, PAD, Grammar, Kind, Note, Vocabulary, decode_tokens, encode_notes


def check_settings(settings: SampleSettings) -> None:
    """Every sampling setting a user can give, checked in one place (one line each)."""
    if not math.isfinite(settings.temperature) or settings.temperature < 0:
        raise ComposerError(f"--temperature {settings.temperature:g}: must be 0 (greedy) or more")
    if not 0 < settings.top_p <= 1:
        raise ComposerError(f"--top-p {settings.top_p:g}: must be in (0, 1]")
    if settings.top_k < 0:
        raise ComposerError(f"--top-k {settings.top_k}: must be 0 (off) or more")
    if settings.max_voices is not None and settings.max_voices < 0:
        raise ComposerError(f"--max-voices {settings.max_voices}: must be 0 (no limit) or more")


def filter_logits(logits: np.ndarray, allowed: np.ndarray, settings: SampleSettings) -> np.ndarray:
    """Probabilities over the vocabulary after mask, temperature, top-k and top-p."""
    scores = np.where(allowed, logits.astype(np.float64), -np.inf)
    if settings.temperature <= 0:
        probs = np.zeros_like(scores)
        probs[np.argmax(scores)] = 1.0
        return probs
    scores = scores / settings.temperature
    if settings.top_k > 0 and settings.top_k < allowed.sum():
        kth = np.partition(scores, -settings.top_k)[-settings.top_k]
        scores = np.where(scores >= kth, scores, -np.inf)
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    if settings.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        keep = np.cumsum(probs[order]) - probs[order] < settings.top_p  # always keeps the first
        trimmed = np.zeros_like(probs)
        trimmed[order[keep]] = probs[order[keep]]
        probs = trimmed / trimmed.sum()
    return probs


def note_length(vocab: Vocabulary) -> int:
    """Tokens of the longest note: Pitch [Velocity] Duration, after a Program with instruments."""
    return 2 + bool(vocab.config.velocity_bins) + vocab.config.instruments


def finishing_horizon(vocab: Vocabulary) -> int:
    """Tokens left beyond which every state can still end on a complete note (so no search)."""
    return 4 * (note_length(vocab) + 1)


def can_finish(grammar: Grammar, left: int, memo: dict) -> bool:
    """Whether exactly ``left`` more tokens can end on a complete note (so EOS may follow)."""
    if left == 0:
        return bool(grammar.allowed()[EOS])
    # what the grammar allows depends on time only through how long each note still sounds, so
    # states reached by different shifts share one entry when their sounding notes agree
    key = (
        grammar.pending, grammar.pitch if grammar.pending else None, tuple(grammar.run), grammar.last_pitch,
        grammar.instrument, grammar.onset_instrument,
        grammar.notes > 0, np.maximum(grammar.note_end - grammar.time, 0).tobytes(), grammar.tied, left,
    )
    if key in memo:
        return memo[key]
    allowed = np.flatnonzero(grammar.allowed())
    kinds = grammar.kinds[allowed]
    # one representative per kind suffices except for shifts and programs, whose values change
    # what may follow: the lowest pitch or drum key leaves the most room for chord notes, the
    # shortest duration blocks least; notes first: completing a note is the short way to
    # finish, so most searches end at once; with ties the longest duration too, which alone
    # lets a note go on (kinds as ints: numpy compares an array with an enum member 4x slower)
    durations = allowed[kinds == int(Kind.DURATION)]
    candidates = [
        allowed[kinds == kind][0] for kind in map(int, (Kind.DURATION, Kind.VELOCITY, Kind.DRUM, Kind.PITCH)) if (kinds == kind).any()
    ] + list(durations[-1:] if grammar.vocab.config.ties and len(durations) > 1 else []) + list(
        allowed[kinds == int(Kind.PROGRAM)]
    ) + list(allowed[kinds == int(Kind.SHIFT)])
    result = False
    for token in candidates:
        child = _advanced(grammar, token)
        if can_finish(child, left - 1, memo):
            result = True
            break
    memo[key] = result
    return result


def _advanced(grammar: Grammar, token: int) -> Grammar:
    child = copy.copy(grammar)
    child.run = list(grammar.run)
    child.note_end = grammar.note_end.copy()
    child.advance(token)
    return child


def finishing_mask(grammar: Grammar, left: int, vocab: Vocabulary, memo: dict | None = None) -> np.ndarray:
    """The grammar's mask, less the tokens after which ``left - 1`` tokens cannot finish.

    ``memo`` may be kept for a whole sample: the searches of consecutive steps share subtrees.
    """
    allowed = grammar.allowed()
    allowed[EOS] = False
    if left > finishing_horizon(vocab):
        return allowed
    memo = {} if memo is None else memo
    kinds = grammar.kinds
    for kind in (Kind.SHIFT, Kind.PROGRAM, Kind.PITCH, Kind.DRUM, Kind.VELOCITY, Kind.DURATION):
        # a higher pitch or a longer duration never makes finishing easier, so scanning from the
        # top, the first token that can finish vouches for every one below it (not so for shifts
        # and programs: each is checked); with ties, the longest duration (which a tie may
        # follow) vouches for none
        tokens = np.flatnonzero(allowed & (kinds == int(kind)))[::-1]  # an int: numpy compares an enum member slowly
        tie = vocab.duration_offset + len(vocab.grid) - 1 if vocab.config.ties else None
        for token in tokens:
            if can_finish(_advanced(grammar, token), left - 1, memo):
                if kind not in (Kind.SHIFT, Kind.PROGRAM) and token != tie:
                    break
            else:
                allowed[token] = False
    return allowed


def _close(tokens: list[int], grammar: Grammar) -> None:
    """End a sample on its last complete note: trailing shifts (or a Program) would make EOS ungrammatical."""
    while int(grammar.kinds[tokens[-1]]) in (Kind.SHIFT, Kind.PROGRAM):
        tokens.pop()


def span_shifts(grammar: Grammar, start: int, settings: SampleSettings, new_notes: bool) -> np.ndarray:
    """Which time shifts keep a span honest: filled to its end, without long silences.

    A model that "wants" to stop (EOS is masked) would otherwise draw long rests: a shift that
    reaches the end may close the span only once new notes exist and sound to within 1 % of the
    end, and no shift inside the span may open a silence longer than ``max_rest`` steps.
    """
    target = grammar.time + np.asarray(grammar.grid)
    end = start + settings.steps
    sounding_until = int(grammar.note_end.max())
    closes = target >= end
    may_close = new_notes and sounding_until >= end - max(1, settings.steps // 100)
    silence = target - max(sounding_until, grammar.time)
    within = settings.max_rest is None or silence <= settings.max_rest
    return np.where(closes, may_close, within)


def sample(
    stepper,
    vocab: Vocabulary,
    primers: list[np.ndarray],
    settings: SampleSettings,
    progress: Callable[[int], None] = lambda n: None,
    starts: list[int] | None = None,
    rows: list[int] | None = None,
    spans: list[SampleSettings] | None = None,
) -> list[np.ndarray]:
    """Continue each primer (token arrays starting with BOS, without EOS); returns whole samples.

    ``rows`` number the samples for their generators (default 0, 1, ...), so a sample drawn in
    a smaller group is the one it would be in the whole batch. ``spans`` gives each sample its
    own settings where their spans differ (``steps``, ``max_rest``: openings in other metres
    or tempi), so all advance as one batch; by default every sample uses ``settings``.
    """
    from threadpoolctl import threadpool_limits

    # one BLAS thread: the products are small, and once TensorFlow has started its own threads,
    # BLAS workers fighting them over two cores made sampling 10-40 times slower
    with threadpool_limits(limits=1, user_api="blas"):
        return _sample(stepper, vocab, primers, spans or [settings] * len(primers), progress, starts, rows)


def _sample(stepper, vocab, primers, spans, progress, starts, rows) -> list[np.ndarray]:
    count = len(primers)
    settings = spans[0]  # what all samples share: temperature, top-k, top-p, seed, tokens, cap, ceiling
    grammars = [Grammar(vocab) for _ in primers]
    for grammar, primer in zip(grammars, primers):
        for token in primer:
            if not grammar.allowed()[token]:
                raise ComposerError("the primer is not a grammatical token sequence")
            grammar.advance(token)
        # the ceiling binds what is generated only: a primer from a fuller score stays as it is
        grammar.max_voices = settings.max_voices or None
    rngs = [np.random.default_rng([settings.seed, i]) for i in (rows if rows is not None else range(count))]
    # feed the primers once, right-aligned so every sample's last primer token is fed at the same step
    width = max(len(p) for p in primers)
    state = stepper.initial_state(count)
    logits = None
    for column in range(width):
        tokens = np.array([p[column - width + len(p)] if column >= width - len(p) else BOS for p in primers])
        fresh = np.array([column < width - len(p) for p in primers])
        logits, new_state = stepper.step(tokens, state)
        # rows still waiting for their primer keep a zero state: left padding must not leak in
        state = [(np.where(fresh[:, None], 0, h), np.where(fresh[:, None], 0, c)) for h, c in new_state]
    samples = [list(p) for p in primers]
    # steps are counted from the primer's end (a bar line) when given, else from its last onset
    start_time = list(starts) if starts is not None else [g.time for g in grammars]
    primer_notes = [g.notes for g in grammars]
    done = [False] * count
    memos: list[dict] = [{} for _ in range(count)]
    generated = 0
    # a span in steps always ends (each shift moves time on, and at most a chord's notes fit in
    # between), so it needs no token cap that could cut it short
    limits = [span.tokens if span.tokens is not None else math.inf if span.steps is not None else span.cap for span in spans]
    while True:
        done = [d or generated >= limit for d, limit in zip(done, limits)]
        if all(done):
            break
        chosen = np.full(count, PAD)
        for i, grammar in enumerate(grammars):
            if done[i]:
                continue
            span = spans[i]
            if span.tokens is not None or generated + finishing_horizon(vocab) >= limits[i]:
                allowed = finishing_mask(grammar, limits[i] - generated, vocab, memos[i])
            else:
                allowed = grammar.allowed()
            if span.steps is not None:
                allowed[EOS] = False  # only reaching the end closes a span
                allowed[vocab.ids(Kind.SHIFT)] &= span_shifts(
                    grammar, start_time[i], span, new_notes=grammar.notes > primer_notes[i]
                )
            if not allowed.any():
                _close(samples[i], grammar)
                done[i] = True
                continue
            token = int(rngs[i].choice(len(vocab), p=filter_logits(logits[i], allowed, settings)))
            if token == EOS:
                done[i] = True
                continue
            if span.steps is not None and int(grammar.kinds[token]) == Kind.SHIFT:
                value = grammar.grid[token - vocab.shift_offset]
                if grammar.time + value - start_time[i] >= span.steps:
                    # the next onset would fall on or past the end: close on the last complete note
                    _close(samples[i], grammar)
                    done[i] = True
                    continue
            grammar.advance(token)
            samples[i].append(token)
            chosen[i] = token
        generated += 1
        progress(1)
        logits, state = stepper.step(chosen, state)
    return [np.array(s + [EOS], dtype=np.int32) for s in samples]


# ---- from a run on disk ------------------------------------------------------------------


@dataclass
class Primer:
    name: str
    tokens: np.ndarray
    bpm: float | None = None
    time_signature: str | None = None  # the metre the continuation is in: the primer's at its end
    end: float = 0.0  # quarters
    # the metre's changes within the primer, the first at 0, where it changes metre ([]: none)
    metre: list[Change] = dataclasses.field(default_factory=list)

    def time_signatures(self) -> list[Change] | None:
        """The changes a sample continuing it is written with (None: ``time_signature`` throughout)."""
        return metre_changes(self.metre + [(self.end, self.time_signature)]) if self.metre else None


def primer_from_file(path: Path, bars: float, vocab: Vocabulary) -> Primer:
    """The first ``bars`` bars of a music file as primer tokens (BOS … last complete note),
    counted across the file's changes of metre."""
    if not path.exists():
        raise ComposerError(f"{path}: no such primer file")
    try:
        piece = read_piece(path, instruments=vocab.config.instruments)
    except UnusableFile as error:
        raise ComposerError(f"{path}: {error}") from None
    changes = piece.meta.get("metre") or [(0.0, piece.time_signature)]
    end = bars_end(changes, bars)
    notes = [n for n in piece.notes if n.start < end]
    if not notes:
        raise ComposerError(f"{path}: no notes in the first {bars:g} bars")
    tokens = encode_notes(notes, vocab)[:-1]
    own = changes_before(changes, end)
    return Primer(path.stem, tokens, piece.tempo, metre_at(changes, end), end, own if len(own) > 1 else [])


def check_time_signature(text: str) -> None:
    if metre_problem(text):
        raise ComposerError(f"--time-signature {text!r}: give a metre such as 4/4, 3/4 or 6/8")


@dataclass
class Sampler:
    """One checkpoint of a run, ready to sample: its vocabulary, stepper and run settings."""

    label: str  # e.g. "epoch-0150"
    vocab: Vocabulary
    stepper: object  # model.LSTMStepper
    config: object  # runs.RunConfig
    max_voices: int  # the run's voice ceiling (0: none recorded)

    @property
    def median_bpm(self) -> float:
        return float(self.config.data.median_bpm)

    @property
    def time_signature(self) -> str:
        return self.config.data.time_signature


def load_sampler(run, epoch: str) -> Sampler:
    """The checkpoint of ``epoch`` ('150', 'last') of a ``runs.Run``, resolved once, to a file,
    its weights read straight from the archive (no TensorFlow: start-up in a fraction of a second)."""
    config = run.config()
    vocab = config.vocab()
    label, checkpoint = run.resolve(epoch)
    weights = load_weights(checkpoint, config.model_config())
    run.check_still_holds(label, checkpoint)
    return Sampler(label, vocab, LSTMStepper(weights), config, run_voice_ceiling(run, config))


def run_voice_ceiling(run, config) -> int:
    """The voice ceiling recorded in run.json; for runs made before it was, the corpus's (0: unknown)."""
    if config.data.max_voices:
        return int(config.data.max_voices)
    for folder in (Path(config.data.corpus), run.corpus_dir):
        if (folder / "corpus.json").exists():
            return corpus_voice_ceiling(TokenCorpus.load(folder))
    return 0


def span_steps(primer: Primer, sampler: Sampler, bars: float | None, seconds: float | None) -> int | None:
    """Grid steps to fill after ``primer``: bars of its metre, or seconds at its tempo."""
    spq = sampler.vocab.config.steps_per_quarter
    if bars is not None:
        return int(round(bars * bar_quarters(primer.time_signature or sampler.time_signature) * spq))
    if seconds is not None:
        return int(round(seconds * (primer.bpm or sampler.median_bpm) / 60 * spq))
    return None


def continue_primers(
    sampler: Sampler,
    primers: list[Primer],
    settings: SampleSettings,
    bars: float | None = None,
    seconds: float | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> list[np.ndarray]:
    """Sample a continuation of each primer (whole token arrays, primer included, EOS last).

    All primers advance as one batch, each with its own span (other metres or tempi give other
    lengths); sample i always uses the generator of (seed, i), so it is the same in any batch.
    """
    check_settings(settings)
    spq = sampler.vocab.config.steps_per_quarter
    steps = [span_steps(p, sampler, bars, seconds) for p in primers]
    voices = sampler.max_voices if settings.max_voices is None else settings.max_voices
    spans = [
        dataclasses.replace(
            settings, steps=length, max_voices=voices,
            max_rest=settings.max_rest or int(bar_quarters(p.time_signature or sampler.time_signature) * spq),
        )
        for p, length in zip(primers, steps)
    ]
    starts = [int(round(p.end * spq)) for p in primers]
    return sample(sampler.stepper, sampler.vocab, [p.tokens for p in primers], spans[0], progress, starts, spans=spans)


def continuation(notes: list[Note], start: float, end: float | None = None) -> list[Note]:
    """The notes starting in [start, end), moved to begin at 0 and cut at ``end``."""
    out = []
    for n in notes:
        if n.start >= start - 1e-9 and (end is None or n.start < end - 1e-9):
            duration = n.duration if end is None else min(n.duration, end - n.start)
            out.append(Note(n.pitch, n.start - start, duration, n.velocity, n.program, n.drum))
    return out


def span_end(primer: Primer, sampler: Sampler, bars: float | None, seconds: float | None) -> float | None:
    """Where an asked span ends, in quarters (for cutting the last notes and the file's length)."""
    steps = span_steps(primer, sampler, bars, seconds)
    return None if steps is None else primer.end + steps / sampler.vocab.config.steps_per_quarter


@dataclass
class GenerateResult:
    paths: list[Path]
    tokens: list[np.ndarray]
    seconds: float
    tokens_per_second: float
    scores: list[Path] = dataclasses.field(default_factory=list)  # MusicXML, with --musicxml
    audio: list[Path] = dataclasses.field(default_factory=list)  # WAV, with --wav


def check_generate_options(num: int, tokens: int | None, bars: float | None, seconds: float | None, primer_bars: float,
                           bpm: float | None, program: int | None, no_ceiling: bool) -> None:
    """Finite and in range; above a ceiling (minutes of sampling, or a folder of files a typo
    asked for) only with ``no_ceiling``."""
    check_option("--num", num, 1, 10**6, ceiling=1000, lifted=no_ceiling)
    check_option("--tokens", tokens, 1, 10**9, ceiling=100_000, lifted=no_ceiling)
    check_option("--bars", bars, 0.25, 10**6, ceiling=1000, lifted=no_ceiling)
    check_option("--seconds", seconds, 0.1, 10**7, ceiling=3600, lifted=no_ceiling)
    check_option("--primer-bars", primer_bars, 0.25, 1000)
    check_option("--bpm", bpm, 1, 1000)
    check_option("--program", program, 0, 127)


def generate(
    run_dir: Path,
    epoch: str = "last",
    num: int = 1,
    settings: SampleSettings | None = None,
    bars: float | None = None,
    seconds: float | None = None,
    primer: Path | None = None,
    primer_bars: float = PRIMER_BARS,
    bpm: float | None = None,
    program: int | None = None,
    out: Path | None = None,
    progress: Callable[[int], None] = lambda n: None,
    musicxml: bool = False,
    time_signature: str | None = None,
    wav: bool = False,
    no_ceiling: bool = False,
) -> GenerateResult:
    """Sample ``num`` pieces from one checkpoint of a run and write them as MIDI files
    (and, with ``musicxml``, as scores for notation software beside them: two staves, or a part
    per instrument; with ``wav``, as audio rendered as the comparison page renders its own,
    ``audio.render_wav``).

    The metre is ``time_signature`` when given, else the primer's, else the corpus's most
    common one (run.json): it sets the bars that ``bars`` counts and the files' time signature."""
    import time

    settings = dataclasses.replace(settings or SampleSettings())  # never change the caller's object
    check_generate_options(num, settings.tokens, bars, seconds, primer_bars, bpm, program, no_ceiling)
    if time_signature is not None:
        check_time_signature(time_signature)
    check_settings(settings)
    if out is not None and out.exists() and not out.is_dir():
        raise ComposerError(f"{out}: is a file, not a folder; choose another --out")
    run = Run(run_dir)
    vocab = run.config().vocab()
    if settings.tokens is not None and settings.tokens < note_length(vocab):
        raise ComposerError(
            f"--tokens {settings.tokens}: at least {note_length(vocab)} tokens are needed to end on a complete note"
        )
    sampler = load_sampler(run, epoch)
    first = primer_from_file(primer, primer_bars, vocab) if primer else Primer("bos", np.array([BOS], np.int32))
    if time_signature is not None:
        first.metre = []  # the asked metre throughout, the primer's included
    first.time_signature = time_signature or first.time_signature or sampler.time_signature
    first.bpm = first.bpm or bpm or sampler.median_bpm
    started = time.perf_counter()
    samples = continue_primers(sampler, [first] * num, settings, bars, seconds, progress)
    elapsed = time.perf_counter() - started
    end = span_end(first, sampler, bars, seconds)
    folder = out or run.samples(sampler.label)
    paths: list[Path] = []
    scores: list[Path] = []
    audio: list[Path] = []
    for i, tokens in enumerate(samples):
        name = f"{sampler.label}_{safe_stem(first.name)}_{settings.describe()}_{i + 1:02d}.mid"
        notes = decode_tokens(tokens, vocab)
        paths.append(write_midi(notes, folder / name, first.bpm, program, first.time_signature, end, first.time_signatures()))
        if musicxml:
            from composer.score import write_musicxml

            # the notes the MIDI file holds: cut where the asked span ends
            scores.append(write_musicxml(
                continuation(notes, 0.0, end), paths[-1].with_suffix(".musicxml"), None, first.time_signature, first.bpm, first.end or None,
                time_signatures=first.time_signatures(),
            ))
        if wav:
            from composer.audio import render_wav

            # from the MIDI file itself: its end marker makes the audio last the asked span
            audio.append(render_wav(paths[-1], paths[-1].with_suffix(".wav")).path)
    new_tokens = sum(len(s) - len(first.tokens) - 1 for s in samples)
    return GenerateResult(paths, samples, elapsed, new_tokens / max(elapsed, 1e-9), scores, audio)

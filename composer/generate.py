"""Sampling: prime once, then one token per step with the LSTM state carried, under the grammar mask.

Every sample is valid music by construction: at each step only the tokens the grammar
allows can be drawn (a Duration follows a Pitch, pitches of a chord ascend, ...). Lengths are
honoured exactly:

* ``tokens=T``: T tokens after the primer, then EOS. Near the end, tokens after which the
  sample could not finish on a complete note in the tokens left are masked too.
* ``steps=S`` (from ``--bars`` or ``--seconds``): new onsets fill S grid steps after the
  primer; the first TimeShift that would reach the end closes the sample instead.
* neither: until the model draws EOS, or ``cap`` tokens.

N samples advance together as one batch. Sample i draws from its own generator seeded by
(seed, i), so it is the same whatever the batch size.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from composer import ComposerError
from composer.tokens import BOS, EOS, KIND_SHIFT, PAD, Grammar, Vocabulary, encode_notes


@dataclass
class SampleSettings:
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    seed: int = 0
    tokens: int | None = None
    steps: int | None = None
    cap: int = 4096

    def describe(self) -> str:
        return f"seed{self.seed}_temp{self.temperature:g}_topk{self.top_k}_topp{self.top_p:g}"


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
    return 3 if vocab.config.velocity_bins else 2


def finishing_horizon(vocab: Vocabulary) -> int:
    """Tokens left beyond which every state can still end on a complete note (so no search)."""
    return 4 * (note_length(vocab) + 1)


def can_finish(grammar: Grammar, left: int, memo: dict) -> bool:
    """Whether exactly ``left`` more tokens can end on a complete note (so EOS may follow)."""
    if left == 0:
        return bool(grammar.allowed()[EOS])
    key = (
        grammar.pending, grammar.pitch if grammar.pending else None, tuple(grammar.run), grammar.last_pitch,
        grammar.time, grammar.note_end.tobytes(), left,
    )
    if key in memo:
        return memo[key]
    allowed = np.flatnonzero(grammar.allowed())
    kinds = grammar.kinds[allowed]
    # one representative per kind suffices except for shifts, whose values change what may follow:
    # the lowest pitch leaves the most room for chord notes, the shortest duration blocks least
    # notes first: completing a note is the short way to finish, so most searches end at once
    candidates = [allowed[kinds == kind][0] for kind in (4, 3, 2) if (kinds == kind).any()] + list(
        allowed[kinds == KIND_SHIFT]
    )
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


def finishing_mask(grammar: Grammar, left: int, vocab: Vocabulary) -> np.ndarray:
    """The grammar's mask, less the tokens after which ``left - 1`` tokens cannot finish."""
    allowed = grammar.allowed()
    allowed[EOS] = False
    if left > finishing_horizon(vocab):
        return allowed
    memo: dict = {}
    kinds = grammar.kinds
    for kind in (1, 2, 3, 4):
        # a higher pitch or a longer duration never makes finishing easier, so scanning from the
        # top, the first token that can finish vouches for every one below it
        tokens = np.flatnonzero(allowed & (kinds == kind))[::-1]
        for token in tokens:
            if can_finish(_advanced(grammar, token), left - 1, memo):
                if kind != KIND_SHIFT:
                    break
            else:
                allowed[token] = False
    return allowed


def sample(
    stepper,
    vocab: Vocabulary,
    primers: list[np.ndarray],
    settings: SampleSettings,
    progress: Callable[[int], None] = lambda n: None,
    starts: list[int] | None = None,
) -> list[np.ndarray]:
    """Continue each primer (token arrays starting with BOS, without EOS); returns whole samples."""
    count = len(primers)
    grammars = [Grammar(vocab) for _ in primers]
    for grammar, primer in zip(grammars, primers):
        for token in primer:
            if not grammar.allowed()[token]:
                raise ComposerError("the primer is not a grammatical token sequence")
            grammar.advance(token)
    rngs = [np.random.default_rng([settings.seed, i]) for i in range(count)]
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
    generated = 0
    limit = settings.tokens if settings.tokens is not None else settings.cap
    while not all(done) and generated < limit:
        chosen = np.full(count, PAD)
        for i, grammar in enumerate(grammars):
            if done[i]:
                continue
            if settings.tokens is not None or generated + finishing_horizon(vocab) >= settings.cap:
                allowed = finishing_mask(grammar, limit - generated, vocab)
            else:
                allowed = grammar.allowed()
            if settings.steps is not None and grammar.notes == primer_notes[i]:
                # no new note yet: a shift that reaches the end would leave the continuation empty
                values = np.asarray(grammar.grid)
                allowed[vocab.shift_offset : vocab.pitch_offset] &= grammar.time + values - start_time[i] < settings.steps
            if not allowed.any():
                done[i] = True
                continue
            token = int(rngs[i].choice(len(vocab), p=filter_logits(logits[i], allowed, settings)))
            if token == EOS:
                done[i] = True
                continue
            if settings.steps is not None and grammar.kinds[token] == KIND_SHIFT:
                value = grammar.grid[token - vocab.shift_offset]
                if grammar.time + value - start_time[i] >= settings.steps:
                    # the next onset would fall on or past the end: close on the last complete note
                    while grammar.kinds[samples[i][-1]] == KIND_SHIFT:
                        samples[i].pop()
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
    time_signature: str | None = None
    end: float = 0.0  # quarters


def primer_from_file(path: Path, bars: float, vocab: Vocabulary) -> Primer:
    """The first ``bars`` bars of a music file as primer tokens (BOS … last complete note)."""
    from composer.corpus import UnusableFile, read_piece

    if not path.exists():
        raise ComposerError(f"{path}: no such primer file")
    try:
        piece = read_piece(path)
    except UnusableFile as error:
        raise ComposerError(f"{path}: {error}") from None
    end = bars * bar_quarters(piece.time_signature)
    notes = [n for n in piece.notes if n.start < end]
    if not notes:
        raise ComposerError(f"{path}: no notes in the first {bars:g} bars")
    tokens = encode_notes(notes, vocab)[:-1]
    return Primer(path.stem, tokens, piece.tempo, piece.time_signature, end)


def bar_quarters(time_signature: str) -> float:
    numerator, denominator = (int(x) for x in time_signature.split("/"))
    return numerator * 4.0 / denominator


@dataclass
class GenerateResult:
    paths: list[Path]
    tokens: list[np.ndarray]
    seconds: float
    tokens_per_second: float


def generate(
    run_dir: Path,
    epoch: str = "last",
    num: int = 1,
    settings: SampleSettings | None = None,
    bars: float | None = None,
    seconds: float | None = None,
    primer: Path | None = None,
    primer_bars: float = 2.0,
    bpm: float | None = None,
    program: int = 0,
    out: Path | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> GenerateResult:
    """Sample ``num`` pieces from one checkpoint of a run and write them as MIDI files."""
    import time

    from composer.corpus import write_midi
    from composer.model import LSTMStepper, load_checkpoint
    from composer.runs import Run
    from composer.tokens import decode_tokens

    settings = dataclasses.replace(settings or SampleSettings())  # never change the caller's object
    if num < 1:
        raise ComposerError(f"--num {num}: at least one sample")
    for name, value in (("--bars", bars), ("--seconds", seconds)):
        if value is not None and value <= 0:
            raise ComposerError(f"{name} {value:g}: must be positive")
    if settings.temperature < 0:
        raise ComposerError(f"--temperature {settings.temperature:g}: must be 0 (greedy) or more")
    if not 0 < settings.top_p <= 1:
        raise ComposerError(f"--top-p {settings.top_p:g}: must be in (0, 1]")
    if settings.top_k < 0:
        raise ComposerError(f"--top-k {settings.top_k}: must be 0 (off) or more")
    run = Run(run_dir)
    config = run.config()
    vocab = Vocabulary.from_dict(config["vocabulary"])
    if settings.tokens is not None and settings.tokens < note_length(vocab):
        raise ComposerError(
            f"--tokens {settings.tokens}: at least {note_length(vocab)} tokens are needed to end on a complete note"
        )
    label, checkpoint = run.resolve(epoch)
    stepper = LSTMStepper(load_checkpoint(checkpoint, len(vocab)))
    first = primer_from_file(primer, primer_bars, vocab) if primer else Primer("bos", np.array([BOS], np.int32))
    time_signature = first.time_signature or config["data"].get("time_signature", "4/4")
    tempo = first.bpm or bpm or config["data"].get("median_bpm", 120.0)
    spq = vocab.config.steps_per_quarter
    if bars is not None:
        settings.steps = int(round(bars * bar_quarters(time_signature) * spq))
    elif seconds is not None:
        settings.steps = int(round(seconds * tempo / 60 * spq))
    started = time.perf_counter()
    starts = [int(round(first.end * spq))] * num
    samples = sample(stepper, vocab, [first.tokens] * num, settings, progress, starts)
    elapsed = time.perf_counter() - started
    folder = out or run.samples(label)
    paths = []
    for i, tokens in enumerate(samples):
        name = f"{label}_{first.name}_{settings.describe()}_{i + 1:02d}.mid"
        paths.append(write_midi(decode_tokens(tokens, vocab), folder / name, tempo, program, time_signature))
    new_tokens = sum(len(s) - len(first.tokens) - 1 for s in samples)
    return GenerateResult(paths, samples, elapsed, new_tokens / max(elapsed, 1e-9))

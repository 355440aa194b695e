"""The n-gram yardstick: proper distributions, scoring exactly as the LSTM is scored, and real gains."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.baseline import (
    BaselineScore,
    NgramModel,
    baseline_scores,
    best_baseline,
    fit_ngram,
    order_score,
    probabilities_by_order,
)
from composer.dataset import TokenCorpus, tokenize_corpus
from composer.tokens import BOS, EOS, Note, Vocabulary, count_notes, encode_notes

VOCAB = Vocabulary()
MIDI_DATA = Path(__file__).resolve().parent.parent / "midi_data"
# a few shifts, pitches and durations: enough structure for counts of 1, 2, 3 and 4+ to occur
ALPHABET = np.array(
    [VOCAB.shift_token(s) for s in (3, 6, 12)]
    + [VOCAB.pitch_token(p) for p in (60, 62, 64, 67)]
    + [VOCAB.duration_token(d) for d in (3, 6, 12)]
)


def random_pieces(seed: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(ALPHABET) + 1)
    return [
        np.concatenate([[BOS], rng.choice(ALPHABET, rng.integers(1, 40), p=weights / weights.sum()), [EOS]])
        for _ in range(count)
    ]


# ---- the model read one context at a time: the definition the vectorized passes must equal --------


def gram_id(model: NgramModel, gram) -> int:
    """Trie id of an n-gram at level ``len(gram)``, or -1 if training never saw it (() is the root, 0)."""
    node = 0
    for level, token in enumerate(gram):
        if not 0 <= int(token) < model.vocab_size:
            return -1
        keys = model.keys[level]
        key = node * model.vocab_size + int(token)
        i = int(np.searchsorted(keys, key))
        if i == len(keys) or keys[i] != key:
            return -1
        node = i
    return node


def distribution(model: NgramModel, context) -> np.ndarray:
    """p(· | context) over the whole vocabulary, straight from the formula of baseline.py's docstring."""
    probs = np.full(model.vocab_size, 1.0 / model.vocab_size)
    context = [int(t) for t in context][max(0, len(context) - model.order + 1) :]
    for k in range(1, len(context) + 2):
        parent = gram_id(model, context[len(context) - k + 1 :])
        table = model.table(k)
        if parent < 0 or table.total[parent] == 0:
            break
        keys = model.keys[k - 1]
        lo, hi = np.searchsorted(keys, [parent * model.vocab_size, (parent + 1) * model.vocab_size])
        probs *= table.backoff[parent]
        probs[keys[lo:hi] % model.vocab_size] += table.discounted[lo:hi] / table.total[parent]
    return probs


def log2_prob(model: NgramModel, context, token: int) -> float:
    return float(np.log2(distribution(model, context)[int(token)]))


def score_pieces(model: NgramModel, pieces, vocab: Vocabulary, order: int | None = None) -> BaselineScore:
    """What baseline_scores reports for one order (the model's own, or a lower one of the same fit)."""
    order = order or model.order
    return order_score(order, probabilities_by_order(model, pieces)[order - 1], pieces, vocab)


def lower(model: NgramModel, order: int) -> NgramModel:
    return dataclasses.replace(model, order=order)


SMALL_MODEL = fit_ngram(random_pieces(0, 80), order=4, vocab_size=len(VOCAB))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([*ALPHABET.tolist(), BOS, EOS, 0, len(VOCAB) - 1]), max_size=8), st.integers(1, 4))
def test_distribution_sums_to_one_for_any_context(context, order):
    probs = distribution(lower(SMALL_MODEL, order), context)
    assert probs.shape == (len(VOCAB),)
    assert math.isclose(probs.sum(), 1.0, rel_tol=1e-12)
    assert (probs > 0).all()


def test_unseen_token_keeps_some_probability():
    a, b, unseen = VOCAB.pitch_token(60), VOCAB.duration_token(12), VOCAB.pitch_token(61)
    pieces = [np.array([BOS, a, b, a, b, EOS])] * 5
    model = fit_ngram(pieces, order=3, vocab_size=len(VOCAB))
    for context in ([BOS], [BOS, a], [a, b], [unseen, unseen]):
        probs = distribution(model, context)
        assert probs[unseen] > 0
        assert math.isclose(probs.sum(), 1.0, rel_tol=1e-12)
    assert log2_prob(model, [BOS, a], unseen) == pytest.approx(math.log2(distribution(model, [BOS, a])[unseen]))


def test_a_repeating_sequence_is_learnt_by_a_high_enough_order():
    # period 4 with a repeated token, so order 2 is ambiguous and order 3 is not
    cycle = [VOCAB.pitch_token(60), VOCAB.duration_token(6), VOCAB.pitch_token(60), VOCAB.duration_token(12)]
    pieces = [np.array([BOS] + cycle * 30 + [EOS])] * 4
    scores = {order: score_pieces(fit_ngram(pieces, order, len(VOCAB)), pieces, VOCAB) for order in (1, 2, 3, 5)}
    assert scores[5].bits_per_token < 0.1
    assert scores[3].bits_per_token < 0.1
    assert scores[2].bits_per_token < scores[1].bits_per_token
    assert scores[1].bits_per_token > 1.0


def test_bits_per_note_divides_total_bits_by_notes():
    # with no training data every token costs log2(V) bits, so the figures are known exactly
    notes = [Note(60, 0, 1), Note(64, 0, 1), Note(67, 1, 2)]
    first = encode_notes(notes, VOCAB)
    second = encode_notes(notes[:1], VOCAB)
    assert count_notes(first, VOCAB) == 3 and count_notes(second, VOCAB) == 1
    model = fit_ngram([], order=3, vocab_size=len(VOCAB))
    score = score_pieces(model, [first, second], VOCAB)
    predicted = (len(first) - 1) + (len(second) - 1)  # BOS is given, never predicted
    bits = predicted * math.log2(len(VOCAB))
    assert score == BaselineScore(3, pytest.approx(bits / 4), pytest.approx(bits / predicted))


def test_score_is_the_sum_of_next_token_log_probabilities():
    train, held_out = random_pieces(1, 60), random_pieces(2, 5)
    model = fit_ngram(train, order=4, vocab_size=len(VOCAB))
    bits = -sum(log2_prob(model, piece[:t], piece[t]) for piece in held_out for t in range(1, len(piece)))
    notes = sum(count_notes(p, VOCAB) for p in held_out)
    assert score_pieces(model, held_out, VOCAB).bits_per_note == pytest.approx(bits / notes)


def test_a_lower_order_read_from_a_higher_fit_equals_fitting_it():
    train, held_out = random_pieces(3, 60), random_pieces(4, 5)
    high = fit_ngram(train, order=6, vocab_size=len(VOCAB))
    for order in (1, 2, 4):
        assert score_pieces(high, held_out, VOCAB, order) == score_pieces(fit_ngram(train, order, len(VOCAB)), held_out, VOCAB)
        # and the context-at-a-time definition agrees with the lower order's vectorized pass
        one = held_out[0]
        assert order_score(order, probabilities_by_order(high, [one])[order - 1], [one], VOCAB).bits_per_note == pytest.approx(
            -sum(log2_prob(lower(high, order), one[:t], one[t]) for t in range(1, len(one))) / count_notes(one, VOCAB)
        )


@pytest.fixture(scope="module")
def chorales(tmp_path_factory) -> TokenCorpus:
    files = sorted(MIDI_DATA.rglob("*.mid"))[:40]
    if not files:
        pytest.skip("the bundled corpus midi_data/ is missing")
    source = tmp_path_factory.mktemp("chorales")
    for path in files:
        (source / path.name).symlink_to(path)
    out = tmp_path_factory.mktemp("tokens")
    tokenize_corpus([source], out, cache_dir=None, validation_share=0.2)
    return TokenCorpus.load(out)


def test_on_bundled_chorales_order_five_beats_order_one(chorales):
    train, validation = chorales.split("train"), chorales.split("validation")
    assert train and validation
    scores = baseline_scores(train, validation, chorales.vocab, max_order=5)
    assert [s.order for s in scores] == [1, 2, 3, 4, 5]
    assert scores[4].bits_per_note < scores[0].bits_per_note - 2.0
    assert best_baseline(scores).order > 1



def test_the_order_is_raised_until_the_score_stops_improving():
    # melodies strung from 32 two-pitch phrases of 16 notes that come in families of 4 sharing
    # all but their last 3 notes: which phrase is playing is known only late, so the score keeps
    # improving past order 16, and contexts reaching across a phrase boundary (the next phrase
    # is drawn at random) stop helping
    rng = np.random.default_rng(3)
    pitches = np.array([VOCAB.pitch_token(60), VOCAB.pitch_token(62)])
    bank = np.repeat(rng.choice(pitches, (8, 16)), 4, axis=0)
    bank[:, -3:] = rng.choice(pitches, (32, 3))

    def melody() -> np.ndarray:
        notes = np.concatenate([bank[i] for i in rng.integers(0, 32, 60)])
        return np.concatenate([[BOS], np.stack([notes, np.full(len(notes), VOCAB.duration_token(6))], 1).ravel(), [EOS]])

    train, validation = [melody() for _ in range(20)], [melody() for _ in range(4)]
    fixed = best_baseline(baseline_scores(train, validation, VOCAB, max_order=16))
    adaptive = baseline_scores(train, validation, VOCAB)
    best = best_baseline(adaptive)
    assert fixed.order >= 14  # still improving near the old fixed ceiling
    assert best.order > 16 and best.bits_per_note < fixed.bits_per_note - 0.2
    assert len(adaptive) == 64  # 16, 32, then 64, where the best lies 4 or more orders below
    assert best.order <= 64 - 4 and adaptive[-1].bits_per_note > best.bits_per_note + 0.5
    # on a corpus that stops improving early, the first fit is enough
    assert len(baseline_scores(random_pieces(5, 80), random_pieces(6, 10), VOCAB)) == 16

"""The n-gram yardstick: an interpolated, modified Kneser-Ney language model over token ids.

An LSTM's validation loss means little on its own. What it must beat is a model that only counts:
a smoothed n-gram model fitted on the same training pieces and scored the same way, in bits per
note (DESIGN.md, "Measures" and "Reference figures"). If the network does not beat the best
n-gram order, it has learnt nothing that counting the training set would not give.

The model is modified Kneser-Ney (Chen & Goodman 1998) with interpolation:

    p_k(w | h) = max(c(hw) - D_k(c(hw)), 0) / c(h·)  +  γ_k(h) · p_{k-1}(w | h minus its first token)
    γ_k(h)     = (D_k1 · N1(h·) + D_k2 · N2(h·) + D_k3+ · N3+(h·)) / c(h·)

down to a uniform distribution over the whole vocabulary, so that every token keeps a non-zero
probability. The highest order counts occurrences; lower orders count distinct left extensions
(continuation counts), except n-grams that begin a piece, which have no left extension and keep
their occurrence counts (as KenLM does). The three discounts of each order come from its
count-of-counts.

Contexts never cross piece boundaries and are not padded: near the start of a piece the context
is the whole prefix from BOS, so the first tokens are predicted by the orders that fit. A piece's
BOS is given, never predicted, exactly as the LSTM predicts ``tokens[1:]`` from ``tokens[:-1]``.

All n-grams are held in a trie stored as one sorted key array per order (``parent id · V +
token``), so fitting every order up to 12 and scoring the held-out pieces are a few vectorized
passes; one fit at order n scores every lower order too (``probabilities_by_order``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from composer.tokens import Vocabulary, count_notes

# Used when an order's count-of-counts cannot support the three-discount estimate (tiny or
# degenerate training data: some count class among 1..4 is empty or an estimate is not positive).
FALLBACK_DISCOUNT = 0.5


@dataclass(frozen=True)
class BaselineScore:
    order: int
    bits_per_note: float
    bits_per_token: float


@dataclass(frozen=True, eq=False)
class OrderTable:
    """One order's smoothing terms, from either occurrence or continuation counts."""

    discounted: np.ndarray  # per n-gram id: count - D(count)
    total: np.ndarray  # per context id (the (n-1)-gram): the counts of its continuations, summed
    backoff: np.ndarray  # per context id: γ, the discounted mass over the total (0 where the total is 0)
    discounts: tuple[float, float, float]


@dataclass(frozen=True, eq=False)
class NgramModel:
    """A fitted model; ``keys[k - 1]`` is the sorted trie level of the k-grams seen in training.

    ``occurrence[k - 1]`` serves order k when it is the model's top order, ``continuation[k - 1]``
    when a higher order backs off to it (there is none for the fitted order itself).
    """

    order: int
    vocab_size: int
    keys: list[np.ndarray]
    occurrence: list[OrderTable]
    continuation: list[OrderTable]

    def table(self, k: int) -> OrderTable:
        return self.occurrence[k - 1] if k == self.order else self.continuation[k - 1]


def estimate_discounts(counts: np.ndarray) -> tuple[float, float, float]:
    """Chen & Goodman's D1, D2, D3+ from how many n-grams were seen once, twice, three, four times."""
    n1, n2, n3, n4 = (int(np.count_nonzero(counts == i)) for i in range(1, 5))
    if min(n1, n2, n3, n4) == 0:
        return (FALLBACK_DISCOUNT,) * 3
    y = n1 / (n1 + 2 * n2)
    d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    if min(d) <= 0:
        return (FALLBACK_DISCOUNT,) * 3
    return d


def order_table(counts: np.ndarray, parents: np.ndarray, contexts: int) -> OrderTable:
    """Smoothing terms of one order from the counts of its n-grams and each n-gram's context id."""
    d1, d2, d3 = estimate_discounts(counts)
    # every discount is at most its count class (1, 2, 3), so no count goes negative
    discount = np.select([counts == 0, counts == 1, counts == 2], [0.0, d1, d2], d3)
    total = np.bincount(parents, weights=counts, minlength=contexts)
    mass = np.bincount(parents, weights=discount, minlength=contexts)
    backoff = np.divide(mass, total, out=np.zeros(contexts), where=total > 0)
    return OrderTable(counts - discount, total, backoff, (d1, d2, d3))


def _concatenate(pieces: list[np.ndarray], vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """All pieces in one int64 array, and each position's distance from the start of its piece."""
    tokens = np.concatenate([np.asarray(p, dtype=np.int64) for p in pieces]) if pieces else np.zeros(0, np.int64)
    # an id beyond the vocabulary would alias another n-gram's trie key
    if len(tokens) and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(f"token ids must lie in 0..{vocab_size - 1}")
    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return tokens, np.arange(len(tokens)) - starts


def fit_ngram(pieces: list[np.ndarray], order: int, vocab_size: int) -> NgramModel:
    """Count every n-gram up to ``order`` in the training pieces (each BOS … EOS)."""
    if order < 1:
        raise ValueError(f"order must be at least 1, not {order}")
    tokens, position = _concatenate(pieces, vocab_size)
    keys: list[np.ndarray] = []
    parents: list[np.ndarray] = []  # per k-gram id: id of its context, the (k-1)-gram before the last token
    suffixes: list[np.ndarray] = []  # per k-gram id: id of the (k-1)-gram after its first token
    occurrences: list[np.ndarray] = []
    at_start: list[np.ndarray] = []  # per k-gram id: it begins a piece, so it has no left extension
    previous = np.zeros(len(tokens), dtype=np.int64)  # per position: id of the (k-1)-gram ending there
    for k in range(1, order + 1):
        valid = np.flatnonzero(position >= k - 1)
        parent = previous[valid - 1] if k > 1 else np.zeros(len(valid), dtype=np.int64)
        level_keys, inverse = np.unique(parent * vocab_size + tokens[valid], return_inverse=True)
        size = len(level_keys)
        keys.append(level_keys)
        parents.append(level_keys // vocab_size)
        # BOS is given, never predicted: a gram ending on it is a context only
        occurrences.append(np.bincount(inverse[position[valid] > 0], minlength=size).astype(np.float64))
        starts = np.zeros(size, dtype=bool)
        starts[inverse[position[valid] == k - 1]] = True
        at_start.append(starts)
        suffix = np.zeros(size, dtype=np.int64)
        if k > 1:
            suffix[inverse] = previous[valid]
        suffixes.append(suffix)
        previous = np.full(len(tokens), -1, dtype=np.int64)
        previous[valid] = inverse
    occurrence = []
    continuation = []
    for k in range(1, order + 1):
        contexts = len(keys[k - 2]) if k > 1 else 1
        occurrence.append(order_table(occurrences[k - 1], parents[k - 1], contexts))
        if k < order:
            left_extensions = np.bincount(suffixes[k], minlength=len(keys[k - 1])).astype(np.float64)
            counts = np.where(at_start[k - 1], occurrences[k - 1], left_extensions)
            continuation.append(order_table(counts, parents[k - 1], contexts))
    return NgramModel(order, vocab_size, keys, occurrence, continuation)


def _gram_ids(model: NgramModel, tokens: np.ndarray, position: np.ndarray) -> list[np.ndarray]:
    """Per order k, the trie id of the k-gram ending at each position (-1: unseen or too near the start)."""
    ids = []
    previous = np.zeros(len(tokens), dtype=np.int64)
    for k, keys in enumerate(model.keys[: model.order], 1):
        parent = previous if k == 1 else np.concatenate([[-1], previous[:-1]])
        candidate = np.flatnonzero((parent >= 0) & (position >= k - 1))
        key = parent[candidate] * model.vocab_size + tokens[candidate]
        found = np.searchsorted(keys, key)
        hit = found < len(keys)
        hit[hit] = keys[found[hit]] == key[hit]
        previous = np.full(len(tokens), -1, dtype=np.int64)
        previous[candidate[hit]] = found[hit]
        ids.append(previous)
    return ids


def probabilities_by_order(model: NgramModel, pieces: list[np.ndarray]) -> list[np.ndarray]:
    """p(tokens[t] | tokens[:t]) for every t ≥ 1 of every piece, under orders 1..model.order.

    The lower orders share one chain of continuation-count terms; each order n then adds its own
    occurrence-count top, which is what makes the scores of all orders cost little more than one.
    """
    tokens, position = _concatenate(pieces, model.vocab_size)
    ids = _gram_ids(model, tokens, position)
    target = np.flatnonzero(position > 0)
    parent_ids = [np.zeros(len(target), dtype=np.int64)] + [g[target - 1] for g in ids[:-1]]
    gram_ids = [g[target] for g in ids]

    def step(table: OrderTable, k: int, lower: np.ndarray) -> np.ndarray:
        parent, gram = parent_ids[k - 1], gram_ids[k - 1]
        seen = parent >= 0
        seen[seen] = table.total[parent[seen]] > 0
        probs = lower.copy()
        probs[seen] *= table.backoff[parent[seen]]
        hit = seen & (gram >= 0)
        probs[hit] += table.discounted[gram[hit]] / table.total[parent[hit]]
        return probs

    chain = np.full(len(target), 1.0 / model.vocab_size)
    result = []
    for k in range(1, model.order + 1):
        result.append(step(model.occurrence[k - 1], k, chain))
        if k < model.order:
            chain = step(model.continuation[k - 1], k, chain)
    return result


def order_score(order: int, probs: np.ndarray, pieces: list[np.ndarray], vocab: Vocabulary) -> BaselineScore:
    notes = sum(count_notes(p, vocab) for p in pieces)
    predicted = sum(max(len(p) - 1, 0) for p in pieces)
    if notes == 0:
        raise ValueError("the held-out pieces hold no notes, so bits per note is undefined")
    bits = float(-np.log2(probs).sum())
    return BaselineScore(order, bits / notes, bits / predicted)


# The adaptive search fits this order first, then doubles it while the best order is within
# ORDER_PATIENCE of the highest fitted one (still improving there), up to ORDER_LIMIT.
FIRST_ORDER = 16
ORDER_PATIENCE = 4
ORDER_LIMIT = 128


def baseline_scores(
    train: list[np.ndarray], validation: list[np.ndarray], vocab: Vocabulary, max_order: int | None = None
) -> list[BaselineScore]:
    """Validation scores of every order 1..N, from one fit at N.

    With ``max_order`` N is that order. Without it the order is raised until the score stops
    improving: the best order must lie ``ORDER_PATIENCE`` orders below the highest fitted, so
    the line the LSTM has to beat is found rather than assumed (the chorales stop at n = 14, a
    folk-tune corpus was still improving at n = 28). Every order of a fit comes from one pass.
    """
    order = max_order or FIRST_ORDER
    while True:
        model = fit_ngram(train, order, len(vocab))
        scores = [order_score(k, p, validation, vocab) for k, p in enumerate(probabilities_by_order(model, validation), 1)]
        if max_order or best_baseline(scores).order <= order - ORDER_PATIENCE or order >= ORDER_LIMIT:
            return scores
        order = min(ORDER_LIMIT, order * 2)


def best_baseline(scores: list[BaselineScore]) -> BaselineScore:
    """The order with the fewest bits per note: the figure the LSTM has to beat."""
    return min(scores, key=lambda s: s.bits_per_note)

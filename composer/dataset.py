"""The tokenized corpus: tokenizing folders (parallel, cached by content hash), the split, the files on disk.

A tokenized corpus directory holds

    vocab.json    the Vocabulary (configuration and every token's name)
    corpus.json   one record per piece (source, hash, tempo, time signature, key, notes,
                  tokens, split, metre changes) and the files that were skipped, with reasons
    tokens.npz    ``tokens`` (all pieces concatenated, int16) and ``offsets`` (n + 1 bounds)

``training_windows`` streams the training windows with ``tf.data``; TensorFlow is imported
inside it only, so tokenizing never pays for it.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import zipfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from composer import ComposerError
from composer.config import VALIDATION_SHARE
from composer.corpus import Limits, Piece, UnreadableFile, UnusableFile, discover_music_files, read_bounded, read_pieces
from composer.metrics import voice_ceiling
from composer.storage import FolderLock, atomic_path, write_together
from composer.tokens import TokenizerConfig, Vocabulary, count_notes, decode_tokens, encode_notes, vocabulary

# bump when reading or encoding changes what a file tokenizes to; 6: the metadata holds the
# metre's changes (PieceRecord.metre_changes), which results cached before lack
CACHE_VERSION = 6
NEAR_DUPLICATE_WINDOW = 16
NEAR_DUPLICATE_SHARE = 0.5
# ... or one of them has this share of its tokens inside spans of this length found in the other
# (a melody set again in another work: few 16-token windows in common overall, long runs verbatim)
SHARED_SPAN = 32
SHARED_SPAN_SHARE = 0.3


@dataclass
class PieceRecord:
    name: str
    source: str
    hash: str
    tempo: float
    time_signature: str
    key: str
    notes: int
    tokens: int
    split: str = "train"
    # the metre's changes after the first (time_signature, from 0), as [quarter, "n/d"]; [] in
    # corpora tokenized before they were kept, and in every piece of one metre
    metre_changes: list = field(default_factory=list)

    def metre(self) -> list[tuple[float, str]]:
        """Every change of the piece's metre, the first at 0 (``metre.metre_changes``)."""
        return [(0.0, self.time_signature)] + [(float(at), str(s)) for at, s in self.metre_changes]


@dataclass
class TokenCorpus:
    vocab: Vocabulary
    pieces: list[PieceRecord]
    tokens: list[np.ndarray]
    skipped: list[dict] = field(default_factory=list)
    max_voices: int | None = None  # the training pieces' voice ceiling (metrics.voice_ceiling)

    def split(self, name: str) -> list[np.ndarray]:
        return [t for t, p in zip(self.tokens, self.pieces) if p.split == name]

    def content_hash(self) -> str:
        """What the corpus holds: the pieces (by file content), their split and the vocabulary."""
        import hashlib

        text = json.dumps([sorted((p.hash, p.split, p.tokens) for p in self.pieces), self.vocab.to_dict()], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def records(self, name: str) -> list[PieceRecord]:
        return [p for p in self.pieces if p.split == name]

    def save(self, directory: Path) -> list[Path]:
        """Write the corpus as one unit (``storage.write_together``): a failure while writing
        (a full disk) leaves the corpus that was there whole. corpus.json, renamed last, holds
        the hashes of the other files, so a kill between the renames is found on load."""
        offsets = np.cumsum([0] + [len(t) for t in self.tokens])
        flat = np.concatenate(self.tokens) if self.tokens else np.zeros(0)
        buffer = io.BytesIO()
        np.savez(buffer, tokens=flat.astype(np.int16), offsets=offsets.astype(np.int64))
        files = {
            directory / "vocab.json": json.dumps(self.vocab.to_dict(), indent=1).encode(),
            directory / "tokens.npz": buffer.getvalue(),
        }
        corpus = {
            "pieces": [asdict(p) for p in self.pieces],
            "skipped": self.skipped,
            "max_voices": self.max_voices,
            "files": {path.name: hashlib.sha256(data).hexdigest() for path, data in files.items()},
        }
        files[directory / "corpus.json"] = json.dumps(corpus, indent=1).encode()
        return write_together(files)

    @staticmethod
    def load(directory: Path) -> "TokenCorpus":
        if not (directory / "corpus.json").exists():
            raise ComposerError(f"{directory}: not a tokenized corpus (no corpus.json; run `composer tokenize`)")
        try:
            corpus = json.loads((directory / "corpus.json").read_text())
            contents = {name: (directory / name).read_bytes() for name in ("vocab.json", "tokens.npz")}
            check_corpus_files(directory, contents, corpus.get("files"))
            vocab = Vocabulary.from_dict(json.loads(contents["vocab.json"]))
            with np.load(io.BytesIO(contents["tokens.npz"])) as arrays:
                flat, offsets = arrays["tokens"].astype(np.int32), arrays["offsets"].astype(np.int64)
            check_token_arrays(flat, offsets, len(vocab))
            pieces = [PieceRecord(**p) for p in corpus["pieces"]]
        except (OSError, ValueError, KeyError, TypeError, EOFError, RecursionError, zipfile.BadZipFile) as error:
            raise ComposerError(f"{directory}: damaged tokenized corpus ({type(error).__name__}: {str(error)[:100]})") from None
        tokens = [flat[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
        if [len(t) for t in tokens] != [p.tokens for p in pieces]:
            # corpora written before the hashes: the records' lengths must still fit the arrays
            raise ComposerError(
                f"{directory}: tokens.npz ({len(tokens)} pieces) does not belong to corpus.json ({len(pieces)} "
                "records); tokenize again"
            )
        return TokenCorpus(vocab, pieces, tokens, corpus.get("skipped", []), corpus.get("max_voices"))


def check_token_arrays(flat: np.ndarray, offsets: np.ndarray, vocab_size: int) -> None:
    """Offsets that cut ``flat`` into pieces and token ids the vocabulary has (a tampered or
    foreign tokens.npz would otherwise fail deep inside training, after files were written)."""
    if flat.ndim != 1 or offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(flat) or np.any(np.diff(offsets) < 0):
        raise ValueError("tokens.npz offsets do not cut its tokens into pieces")
    if len(flat) and (flat.min() < 0 or flat.max() >= vocab_size):
        raise ValueError(f"tokens.npz holds token ids outside the vocabulary's 0-{vocab_size - 1}")


def check_corpus_files(directory: Path, contents: dict[str, bytes], hashes: dict | None) -> None:
    """Each file is the one corpus.json was written with (by its hash; older corpora have none)."""
    if hashes is not None and not isinstance(hashes, dict):
        raise ComposerError(f"{directory}: damaged corpus.json (its files entry is not a table)")
    for name, data in contents.items():
        if hashes is not None and hashes.get(name) != hashlib.sha256(data).hexdigest():
            raise ComposerError(
                f"{directory}: {name} is not the one corpus.json was written with (a write was cut short); tokenize again"
            )


def corpus_voice_ceiling(corpus: TokenCorpus) -> int:
    """The voice ceiling stored with the corpus, or computed from its training pieces (older corpora)."""
    if corpus.max_voices:
        return int(corpus.max_voices)
    return voice_ceiling([decode_tokens(t, corpus.vocab) for t in corpus.split("train") or corpus.tokens])


@dataclass
class TokenizeSummary:
    files: int
    skipped: list[tuple[str, str]]
    pieces: int
    tokens: int
    notes: int
    vocabulary_used: int
    vocabulary_size: int
    train_pieces: int
    validation_pieces: int
    cache_hits: int
    seconds: float
    written: list[Path]


def music_file_hash(path: Path, max_bytes: int) -> str:
    """Content hash of a music file; its size is checked (os.fstat) before a byte is read, so a
    huge or special file (FIFO, folder) is an UnusableFile, not a long read or a hang."""
    return hashlib.sha256(read_bounded(path, max_bytes)).hexdigest()


def config_key(config: TokenizerConfig, limits: Limits) -> str:
    text = json.dumps([CACHE_VERSION, config.to_dict(), asdict(limits)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# one file's result: (tokens or None, metadata) for each piece in it (each tune of a file of several)
FileResult = list[tuple[np.ndarray | None, dict]]


def tokenize_file(path: Path, config: TokenizerConfig, limits: Limits = Limits()) -> FileResult:
    """One file → (tokens, metadata) or (None, {"reason": ...}) for each of its pieces (the
    metadata's "tune" is its number in a file of several tunes, else ""). Never raises for bad
    input. A reason that depends on the machine rather than the content carries
    ``"transient": True`` and is not cached."""
    try:
        pieces = read_pieces(path, limits, config.instruments)
    except UnreadableFile as error:
        return [(None, {"reason": str(error), "transient": True, "tune": ""})]
    except UnusableFile as error:
        return [(None, {"reason": str(error), "tune": ""})]
    except Exception as error:  # a reader bug must not stop a corpus of thousands
        first = str(error).splitlines()[0][:200] if str(error) else ""
        return [(None, {"reason": f"unexpected {type(error).__name__}: {first}".rstrip(": "), "tune": ""})]
    vocab = vocabulary(config)
    return [piece_tokens(piece, tune, vocab, limits) for tune, piece in pieces]


def piece_tokens(piece: Piece | str, tune: str, vocab: Vocabulary, limits: Limits) -> tuple[np.ndarray | None, dict]:
    """One piece of a file (or the reason it was skipped) → (tokens, metadata) or (None, reason)."""
    if isinstance(piece, str):
        return None, {"reason": piece, "tune": tune}
    tokens = encode_notes(piece.notes, vocab)
    if len(tokens) == 2:  # BOS, EOS: with instruments, drums outside the GM keys are all it had
        return None, {"reason": "no notes the vocabulary holds (drums outside the GM keys 35-81 only)", "tune": tune}
    if len(tokens) > limits.max_tokens:
        return None, {"reason": f"{len(tokens):,} tokens, over the {limits.max_tokens:,}-token limit per piece", "tune": tune}
    meta = {
        "tempo": round(piece.tempo, 3),
        "time_signature": piece.time_signature,
        "key": piece.key,
        "notes": count_notes(tokens, vocab),
        "tune": tune,
        "metre_changes": [list(c) for c in piece.meta.get("metre", [])[1:]],
    }
    return tokens, meta


class FileCache:
    """Per-file results keyed by content hash, one small .npz per file (all its pieces)."""

    def __init__(self, root: Path, key: str):
        self.root = root / key

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}.npz"

    def get(self, digest: str) -> FileResult | None:
        path = self._path(digest)
        if not path.exists():
            return None
        try:
            with np.load(path) as data:
                metas = json.loads(str(data["meta"]))
                flat, offsets = data["tokens"].astype(np.int32), data["offsets"]
            return [(None if "reason" in m else flat[a:b], m) for m, a, b in zip(metas, offsets[:-1], offsets[1:], strict=True)]
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
            return None  # a damaged cache entry is recomputed

    def put(self, digest: str, result: FileResult) -> None:
        arrays = [np.zeros(0, np.int16) if tokens is None else tokens.astype(np.int16) for tokens, _ in result]
        buffer = io.BytesIO()
        offsets = np.cumsum([0] + [len(a) for a in arrays]).astype(np.int64)
        np.savez(buffer, tokens=np.concatenate(arrays), offsets=offsets, meta=json.dumps([m for _, m in result]))
        try:
            with atomic_path(self._path(digest)) as tmp:
                tmp.write_bytes(buffer.getvalue())
        except OSError:
            pass  # only a speed-up: a full or read-only cache disk must not stop tokenizing


def _tokenize_job(args: tuple[Path, TokenizerConfig, Limits]) -> FileResult:
    return tokenize_file(*args)


def _screened_hash(path: Path, max_bytes: int) -> tuple[str, dict | None]:
    """(content hash, None), or ("", {"reason": ...}) for a file that cannot be read at all."""
    try:
        return music_file_hash(path, max_bytes), None
    except UnreadableFile as error:
        return "", {"reason": str(error), "transient": True, "tune": ""}
    except UnusableFile as error:
        return "", {"reason": str(error), "tune": ""}


def tokenize_files(
    files: list[Path],
    config: TokenizerConfig,
    jobs: int,
    limits: Limits = Limits(),
    cache_dir: Path | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> tuple[list[tuple[Path, str, np.ndarray | None, dict]], int]:
    """Tokenize files in parallel processes; returns (path, hash, tokens, meta) per piece (one
    per file, or one per tune of a file of several, whose hash then ends in ":" and its number)
    and the cache hits.

    A file too large, special or unreadable is skipped before it is read (its hash is "").
    """
    cache = FileCache(cache_dir, config_key(config, limits)) if cache_dir else None
    results: dict[int, FileResult] = {}
    digests: list[str] = []
    for i, path in enumerate(files):
        digest, failed = _screened_hash(path, limits.max_bytes)
        digests.append(digest)
        if failed is not None:
            results[i] = [(None, failed)]
    screened = len(results)
    if cache:
        for i, digest in enumerate(digests):
            hit = cache.get(digest) if digest else None
            if hit is not None:
                results[i] = hit
    progress(len(results))
    hits = len(results) - screened
    todo = [i for i in range(len(files)) if i not in results]
    jobs_args = [(files[i], config, limits) for i in todo]
    if len(todo) > 4 and jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            computed = pool.map(_tokenize_job, jobs_args, chunksize=max(1, min(16, len(todo) // (4 * jobs))))
            for i, result in zip(todo, computed):
                results[i] = result
                progress(1)
    else:
        for i, args in zip(todo, jobs_args):
            results[i] = _tokenize_job(args)
            progress(1)
    if cache:
        for i in todo:
            if not any(meta.get("transient") for _, meta in results[i]):
                cache.put(digests[i], results[i])
    pieces = [
        (files[i], f"{digests[i]}:{meta['tune']}" if meta.get("tune") else digests[i], tokens, meta)
        for i in range(len(files))
        for tokens, meta in results[i]
    ]
    return pieces, hits


def assign_splits(tokens: list[np.ndarray], hashes: list[str], validation_share: float) -> list[str]:
    """Hash-based split by piece that keeps near-duplicates on one side.

    Two pieces are near-duplicates if they share at least half of their 16-token windows (the
    same chorale harmonized twice, say) or if 30 % of either's tokens lie inside 32-token spans
    found verbatim in the other (the same melody reused in another work). Near-duplicates form
    one group, and a group goes to one side whole. The split depends on the files' contents
    only, not on their names or order.
    """
    n = len(tokens)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    windows = [window_set(t) for t in tokens]
    for (a, b), count in shared_windows(windows).items():
        if count >= NEAR_DUPLICATE_SHARE * min(len(windows[a]), len(windows[b])):
            parent[root(a)] = root(b)
    for a, b in long_shared_spans(tokens):
        parent[root(a)] = root(b)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        groups[root(i)].append(i)
    # groups in the order of their first member's hash fill validation up to its share: the
    # same corpus always splits the same way, and the share is met exactly, not just on average
    splits = ["train"] * n
    held = 0
    for members in sorted(groups.values(), key=lambda m: min(hashes[i] for i in m)):
        if held + len(members) > validation_share * n:
            continue
        for i in members:
            splits[i] = "validation"
        held += len(members)
    return splits


def window_set(tokens: np.ndarray, size: int = NEAR_DUPLICATE_WINDOW) -> set[bytes]:
    tokens = np.ascontiguousarray(tokens, dtype=np.int16)
    if len(tokens) < size:
        return {tokens.tobytes()}
    view = np.lib.stride_tricks.sliding_window_view(tokens, size)
    return {row.tobytes() for row in view}


def shared_windows(windows: list[set[bytes]]) -> Counter[tuple[int, int]]:
    """How many windows each pair of pieces has in common (pairs with none are left out)."""
    index: dict[bytes, list[int]] = defaultdict(list)
    for i, ws in enumerate(windows):
        for w in ws:
            index[w].append(i)
    shared: Counter[tuple[int, int]] = Counter()
    for owners in index.values():
        if 1 < len(owners) <= 64:  # windows common to many pieces are stock formulas, not copies
            for a in range(len(owners)):
                for b in range(a + 1, len(owners)):
                    shared[owners[a], owners[b]] += 1
    return shared


def long_shared_spans(tokens: list[np.ndarray], span: int = SHARED_SPAN, share: float = SHARED_SPAN_SHARE) -> list[tuple[int, int]]:
    """Pairs (a, b) where ``share`` of a's or b's tokens lie inside ``span``-token runs found in the other."""
    starts: list[dict[bytes, list[int]]] = []
    for piece in tokens:
        piece = np.ascontiguousarray(piece, dtype=np.int16)
        where: dict[bytes, list[int]] = defaultdict(list)
        if len(piece) >= span:
            for position, row in enumerate(np.lib.stride_tricks.sliding_window_view(piece, span)):
                where[row.tobytes()].append(position)
        starts.append(where)
    pairs = []
    for a, b in shared_windows([set(where) for where in starts]):
        common = starts[a].keys() & starts[b].keys()
        for piece in (a, b):
            covered = np.zeros(len(tokens[piece]), bool)
            for window in common:
                for position in starts[piece][window]:
                    covered[position : position + span] = True
            if covered.mean() >= share:
                pairs.append((a, b))
                break
    return pairs


def tokenize_corpus(
    sources: list[Path],
    out: Path,
    config: TokenizerConfig = TokenizerConfig(),
    jobs: int | None = None,
    limits: Limits = Limits(),
    cache_dir: Path | None = None,
    validation_share: float = VALIDATION_SHARE,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> TokenizeSummary:
    """Read every music file under ``sources``, tokenize, split, and write the corpus to ``out``.

    ``out`` is locked meanwhile: a second tokenizer into it refuses instead of mixing files.
    """
    if config.problem():
        raise ComposerError(f"--instruments and --tie-long-notes: {config.problem()}; choose one")
    with FolderLock(out, "tokenizing"):
        return _tokenize_corpus(sources, out, config, jobs, limits, cache_dir, validation_share, progress)


def _tokenize_corpus(sources, out, config, jobs, limits, cache_dir, validation_share, progress) -> TokenizeSummary:
    import time

    started = time.perf_counter()
    found = discover_music_files(sources)
    files = found.files
    if not files and not found.skipped:
        raise ComposerError(f"{', '.join(map(str, sources))}: no music files (.mid, .midi, .xml, .mxl, .musicxml, .abc, .krn)")
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        progress(done, len(files))

    results, hits = tokenize_files(files, config, jobs or os.cpu_count() or 1, limits, cache_dir, step)
    good = [(p, h, t, m) for p, h, t, m in results if t is not None]
    # paths that could not even be listed or opened (FIFOs, symlink loops, unreadable folders) first
    skipped = [(str(p), r) for p, r in found.skipped] + [(piece_source(p, m), m["reason"]) for p, _, t, m in results if t is None]
    if not good:
        reasons = "; ".join(f"{Path(p).name}: {r}" for p, r in skipped[:5])
        raise ComposerError(f"no usable music in {', '.join(map(str, sources))} ({reasons})")
    vocab = Vocabulary(config)
    tokens = [t for _, _, t, _ in good]
    splits = assign_splits(tokens, [h for _, h, _, _ in good], validation_share)
    names = unique_names([(p, m["tune"]) for p, _, _, m in good])
    pieces = [
        PieceRecord(name, str(p), h, m["tempo"], m["time_signature"], m["key"], m["notes"], len(t), s, m["metre_changes"])
        for name, (p, h, t, m), s in zip(names, good, splits)
    ]
    corpus = TokenCorpus(vocab, pieces, tokens, [{"source": p, "reason": r} for p, r in skipped])
    corpus.max_voices = corpus_voice_ceiling(corpus)
    try:
        written = corpus.save(out)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise ComposerError(
            f"{out}: disk full while writing the corpus ({error.filename or 'no space left'}); nothing there was "
            "changed; free some space and tokenize again"
        ) from None
    used = len(np.unique(np.concatenate(tokens)))
    return TokenizeSummary(
        files=len(files) + len(found.skipped),
        skipped=skipped,
        pieces=len(pieces),
        tokens=int(sum(len(t) for t in tokens)),
        notes=int(sum(p.notes for p in pieces)),
        vocabulary_used=used,
        vocabulary_size=len(vocab),
        train_pieces=splits.count("train"),
        validation_pieces=splits.count("validation"),
        cache_hits=hits,
        seconds=time.perf_counter() - started,
        written=written,
    )


def unique_names(pieces: list[tuple[Path, str]]) -> list[str]:
    """Short names of (file, tune number) pieces: the file stem, with "-" and the tune number
    for a tune of a file of several, made unique with the parent folder where they clash."""
    short = [p.stem + (f"-{tune}" if tune else "") for p, tune in pieces]
    counts = Counter(short)
    return [name if counts[name] == 1 else f"{p.parent.name}/{name}" for name, (p, _) in zip(short, pieces)]


def piece_source(path: Path, meta: dict) -> str:
    """Where a piece comes from, for messages: the file, and the tune within it if it has several."""
    return f"{path} (tune {meta['tune']})" if meta.get("tune") else str(path)


def training_windows(
    pieces: list[np.ndarray],
    window: int,
    batch: int,
    seed: int,
    epoch: int,
    pitch_tokens: tuple[int, int] | None = None,
    transpose: int = 0,
    worker: tuple[int, int] = (0, 1),
):
    """One epoch of (inputs, targets) batches for next-token training, as a ``tf.data.Dataset``.

    The pieces are one stream; each epoch cuts ``len(stream) // window`` windows at random
    offsets, so an epoch covers every token about once while no window matrix is ever
    materialized (memory stays flat as the corpus grows). Offsets and transpositions come
    from stateless generators seeded by (seed, epoch): the same epoch always sees the same
    data, resumed or not. ``pitch_tokens`` = (first pitch id, number of pitches) enables a
    random transposition of up to ±``transpose`` semitones per window, restricted to shifts
    that keep every pitch of that window in range.

    ``worker`` = (index, count) for data-parallel training on ``count`` workers: each worker
    draws its own windows (the epoch's seed folded with its index) and an epoch has
    ``count`` times fewer steps, so all workers together still cover the stream about once.
    A single worker, (0, 1), gets exactly the windows it always got.
    """
    import tensorflow as tf

    worker_index, workers = worker
    if not 0 <= worker_index < workers:
        raise ComposerError(f"worker {worker_index} of {workers}: no such worker")
    stream = np.concatenate(pieces).astype(np.int32)
    if len(stream) < window + 2:
        raise ComposerError(f"the training pieces hold {len(stream)} tokens, fewer than one window of {window}")
    steps = max(1, (len(stream) - 1) // window // (batch * workers))
    stream_t = tf.constant(stream)
    span = tf.range(window + 1, dtype=tf.int64)
    epoch_seed = tf.constant([seed, epoch], dtype=tf.int64)
    if workers > 1:
        epoch_seed = tf.random.experimental.stateless_fold_in(epoch_seed, worker_index)
    starts = tf.random.stateless_uniform(
        [steps, batch], seed=epoch_seed, minval=0, maxval=len(stream) - window, dtype=tf.int64
    )

    def cut(index, batch_starts):
        windows = tf.gather(stream_t, batch_starts[:, None] + span[None, :])
        if pitch_tokens is not None and transpose > 0:
            first, count = pitch_tokens
            is_pitch = (windows >= first) & (windows < first + count)
            lowest = tf.reduce_min(tf.where(is_pitch, windows - first, count), axis=1)
            highest = tf.reduce_max(tf.where(is_pitch, windows - first, -1), axis=1)
            lo = tf.maximum(-transpose, -lowest)
            hi = tf.minimum(transpose, count - 1 - highest)
            u = tf.random.stateless_uniform([batch], seed=tf.random.experimental.stateless_fold_in(epoch_seed, index))
            shift = lo + tf.cast(tf.floor(u * tf.cast(hi - lo + 1, tf.float32)), tf.int32)
            windows = tf.where(is_pitch, windows + shift[:, None], windows)
        return windows[:, :-1], windows[:, 1:]

    dataset = tf.data.Dataset.from_tensor_slices(starts).enumerate().map(cut, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE), steps

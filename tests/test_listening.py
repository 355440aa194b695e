"""The honest listening page: asked lengths kept, the voice ceiling, intervals and verdicts, the
headline, one sampling path with one settings check, and a quiet stderr."""

from __future__ import annotations

import math
import subprocess
from html import escape
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from composer.cli import app
from composer.compare import OTHER_REAL, REAL, REAL_VS_REAL, Comparison, Measure, clearly_closest, far_from_real, headline, real_holds
from composer.generate import Primer, SampleSettings, continue_primers, load_sampler, primer_from_file, span_end
from composer.metrics import (
    bootstrap_means,
    chord_tone_rate,
    in_key_rate,
    interval,
    voice_ceiling,
)
from composer.runs import Run
from composer.tokens import Note, decode_tokens

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "outputs" / "bach-small-reference"
CHORALES = sorted((REPO / "midi_data" / "bach_chorales").glob("*.mid"))


def chorale_primers(count: int, vocab) -> list[Primer]:
    return [primer_from_file(path, 2.0, vocab) for path in CHORALES[:count]]


def sounding_at_onsets(notes: list[Note], after: float) -> list[int]:
    """Notes sounding at each onset from ``after`` on (held notes included)."""
    starts = np.array([n.start for n in notes])
    ends = starts + np.array([n.duration for n in notes])
    return [int(((starts <= t + 1e-9) & (ends > t + 1e-9)).sum()) for t in sorted({n.start for n in notes if n.start >= after - 1e-9})]


# ---- lengths ----------------------------------------------------------------------------------


@pytest.mark.tensorflow
@pytest.mark.parametrize("epoch", ["100", "150"])
def test_bars_are_filled_on_both_reference_checkpoints(epoch, tmp_path):
    """48 samples of 4 bars per checkpoint, from 6 chorale openings: none ends early."""
    sampler = load_sampler(Run(REFERENCE), epoch)
    primers = chorale_primers(6, sampler.vocab) * 8
    samples = continue_primers(sampler, primers, SampleSettings(seed=3), bars=4)
    for primer, tokens in zip(primers, samples):
        end = span_end(primer, sampler, 4, None)
        notes = decode_tokens(tokens, sampler.vocab)
        new = [n for n in notes if n.start >= primer.end - 1e-9]
        assert new, f"{primer.name}: no new notes"
        assert max(n.start for n in new) < end
        # only a time shift reaching the end closes a span: the last onset is at most the longest
        # shift (8 quarters) before it, never a silent half of the span
        assert max(n.start for n in new) >= end - 8, f"{primer.name}: the sample stopped at {max(n.start for n in new)} of {end}"


@pytest.mark.tensorflow
def test_seconds_fill_the_asked_time_in_the_written_file(tmp_path):
    import pretty_midi

    from composer.generate import generate

    result = generate(REFERENCE, "150", num=8, settings=SampleSettings(seed=1), seconds=12.0, out=tmp_path)
    for path in result.paths:
        assert pretty_midi.PrettyMIDI(str(path)).get_end_time() >= 0.99 * 12.0


# ---- voices -----------------------------------------------------------------------------------


def test_voice_ceiling_is_what_most_pieces_stay_within():
    four = [Note(p, t, 1.0) for t in range(100) for p in (48, 55, 64, 72)]
    five_briefly = four + [Note(80, 0.0, 1.0)]  # a fifth voice 1 % of the time: not *less* than 1 %
    eight = [Note(p, t, 1.0) for t in range(100) for p in range(60, 68)]
    assert voice_ceiling([four] * 95 + [eight] * 5) == 4  # a few fuller pieces do not raise it
    assert voice_ceiling([four] * 80 + [eight] * 20) == 8
    assert voice_ceiling([five_briefly]) == 5
    assert voice_ceiling([four + [Note(80, 0.0, 0.5)]]) == 4  # half a quarter in 100: 0.5 %


def test_bundled_chorales_have_a_ceiling_of_four(tmp_path):
    from composer.dataset import TokenCorpus, tokenize_corpus

    tokenize_corpus([REPO / "midi_data" / "bach_chorales"], tmp_path / "c", jobs=1)
    corpus = TokenCorpus.load(tmp_path / "c")
    assert corpus.max_voices == 4  # stored with the corpus at tokenizing


@pytest.mark.tensorflow
def test_generated_notes_never_exceed_the_ceiling(tmp_path):
    """An untrained model stacks many notes; the mask keeps it to the ceiling, and 0 lifts it."""
    sampler = load_sampler(Run(REFERENCE), "100")
    primers = chorale_primers(4, sampler.vocab) * 8
    capped = continue_primers(sampler, primers, SampleSettings(seed=0, temperature=1.5, max_voices=3), bars=4)
    free = continue_primers(sampler, primers, SampleSettings(seed=0, temperature=1.5, max_voices=0), bars=4)
    most_free = 0
    for primer, tokens, loose in zip(primers, capped, free):
        # the primer's own notes may sound past its end; a new onset never brings them above 3
        counts = sounding_at_onsets(decode_tokens(tokens, sampler.vocab), primer.end + 2)
        assert max(counts) <= 3, counts
        most_free = max(most_free, *sounding_at_onsets(decode_tokens(loose, sampler.vocab), primer.end + 2))
    assert most_free > 3, "without the ceiling the samples never exceed it: the test shows nothing"


# ---- measures, intervals, verdicts ---------------------------------------------------------------


def test_chord_tone_and_in_key_rates():
    c_major = [Note(48, 0, 2), Note(64, 0, 2), Note(67, 0, 2), Note(72, 0, 2)]
    cluster = [Note(60, 2, 1), Note(61, 2, 1), Note(62, 2, 1)]
    assert chord_tone_rate(c_major) == 1.0
    assert chord_tone_rate(c_major + cluster) == 0.5
    assert chord_tone_rate(c_major + [Note(65, 1, 1)]) == 0.5  # F against a held C major chord
    scale = [Note(60 + s, i, 1) for i, s in enumerate((0, 2, 4, 5, 7, 9, 11, 12))]
    assert in_key_rate(scale) == 1.0
    assert in_key_rate([Note(61, 0, 1), Note(66, 1, 1)], context=scale) == 0.0


def test_bootstrap_interval_covers_the_true_mean_at_its_width():
    rng = np.random.default_rng(0)
    values = rng.normal(5.0, 2.0, 400)
    low, high = interval(bootstrap_means(values, seed=1))
    assert low < 5.0 < high
    expected = 2 * 1.96 * 2.0 / math.sqrt(400)
    assert high - low == pytest.approx(expected, rel=0.15)
    # a fair coin over 100 draws: about ±0.1 around 0.5
    coin = rng.integers(0, 2, 100)
    low, high = interval(bootstrap_means(coin, seed=2))
    assert 0.07 < (high - low) / 2 < 0.13
    assert len(bootstrap_means([math.nan])) == 0


def test_a_winner_only_where_the_intervals_separate():
    separated = {"epoch 100": (0.30, 0.25, 0.35), "epoch 150": (0.10, 0.05, 0.15)}
    overlapping = {"epoch 100": (0.30, 0.12, 0.40), "epoch 150": (0.10, 0.05, 0.15)}
    assert clearly_closest(separated, ["epoch 100", "epoch 150"]) == "epoch 150"
    assert clearly_closest(overlapping, ["epoch 100", "epoch 150"]) is None
    assert clearly_closest({"epoch 1": (0.1, 0.1, 0.1)}, ["epoch 1"]) is None  # nothing to beat


def fixed_comparison(closest: list[str | None]) -> Comparison:
    measures = [
        Measure(f"m{i}", "", 0.5, {}, {"epoch 100": (0.2, 0.1, 0.3), "epoch 150": (0.1, 0.0, 0.2), OTHER_REAL: (0.01, 0.0, 0.05)}, c)
        for i, c in enumerate(closest)
    ]
    return Comparison(
        checkpoints=["epoch 100", "epoch 150"],
        bits={"epoch 100": {"validation": 3.949, "training": 3.6}, "epoch 150": {"validation": 3.478, "training": 3.0}},
        measures=measures,
        copies={"epoch 100": (1.0, 0.5, 1.5), "epoch 150": (1.2, 0.6, 1.8)},
        longest_copy={"epoch 100": 1.0, "epoch 150": 1.5, REAL: 3.0},
        samples=32,
        real_is_closest={},
    )


def test_headline_from_a_fixed_table():
    text = headline(fixed_comparison(["epoch 150"] * 6 + [None, "epoch 100"]))
    assert text.startswith("epoch 150 is closer to the real music on 6 of 8 measures (1 no clear difference; epoch 100 on 1)")
    assert "epoch 150 is 0.47 bits per note lower on validation" in text
    assert "copies at most 1.5 beats from training" in text  # the checkpoints', not the real pieces'
    assert "32 samples per checkpoint" in text
    unclear = headline(fixed_comparison([None] * 8))
    assert unclear.startswith("No clear difference between epoch 100 and epoch 150 on any of 8 measures")


def test_headline_says_how_far_each_checkpoint_is_from_real_music_and_how_often_it_is_told_apart():
    from composer.metrics import Distinguishability

    comparison = fixed_comparison([None] * 3)
    fifths, in_key, voices = comparison.measures
    fifths.name, fifths.reference, fifths.values = "parallel fifths", 0.3, {"epoch 100": (2.4, 2.0, 2.8), "epoch 150": (2.1, 1.8, 2.4)}
    in_key.name, in_key.reference, in_key.values = "in key", 0.94, {"epoch 100": (0.85, 0.83, 0.87), "epoch 150": (0.93, 0.92, 0.95)}
    voices.name, voices.values = "voices", {"epoch 100": (3.9, 3.8, 4.0), "epoch 150": (3.9, 3.8, 4.0)}
    voices.distances = {"epoch 100": (0.02, 0.0, 0.04), "epoch 150": (0.02, 0.0, 0.04), OTHER_REAL: (0.02, 0.0, 0.05)}
    fifths.distances = {"epoch 100": (2.1, 1.7, 2.5), "epoch 150": (1.8, 1.5, 2.1), OTHER_REAL: (0.05, 0.0, 0.1)}
    in_key.distances = {"epoch 100": (0.09, 0.07, 0.11), "epoch 150": (0.01, 0.0, 0.02), OTHER_REAL: (0.005, 0.0, 0.03)}
    for m in comparison.measures:
        m.far = {c: far_from_real(m, c) for c in comparison.checkpoints}
    assert fifths.far == {"epoch 100": True, "epoch 150": True} and in_key.far == {"epoch 100": True, "epoch 150": False}
    comparison.distinguishability = {
        "epoch 100": Distinguishability(0.91, 0.85, 0.96, (32, 30)), "epoch 150": Distinguishability(0.72, 0.68, 0.76, (32, 30)),
        REAL_VS_REAL: Distinguishability(0.52, 0.4, 0.63, (30, 30)),
    }
    text = headline(comparison)
    assert "epoch 100 is far from the openings' real continuations on 2 of 3 measures (parallel fifths 2.4 vs 0.3, in key 0.85 vs 0.94)" in text
    assert "epoch 150 is far from the openings' real continuations on 1 of 3 measures (parallel fifths 2.1 vs 0.3)" in text
    assert "real continuations 91 % [85–96] of the time for epoch 100, 72 % [68–76] for epoch 150 (" in text
    assert "real from real: 52 % [40–63]" in text
    assert "50 % = indistinguishable" in text
    near = fixed_comparison([None])
    near.measures[0].far = {"epoch 100": False, "epoch 150": False}
    assert "epoch 150 is within real music's spread on all 1 measures" in headline(near)


def test_real_music_must_not_be_beaten_clearly():
    good = Measure("m", "", 0.5, {}, {"epoch 100": (0.2, 0.1, 0.3), OTHER_REAL: (0.05, 0.0, 0.15)})
    broken = Measure("m", "", 0.5, {}, {"epoch 100": (0.02, 0.0, 0.04), OTHER_REAL: (0.3, 0.2, 0.4)})
    assert real_holds(good, ["epoch 100"]) and not real_holds(broken, ["epoch 100"])


@pytest.mark.tensorflow
def test_real_continuations_are_at_least_as_close_as_the_reference_checkpoints(tmp_path):
    """The sanity check on the bundled corpus: every measure of the page passes it."""
    from composer.compare import CompareSettings, compare

    result = compare(REFERENCE, "100,150", CompareSettings(num=1, samples=24, bars=8), lambda line: None, tmp_path / "page")
    assert set(result.comparison.real_is_closest) == {m.key for m in result.comparison.measures}
    failing = [key for key, ok in result.comparison.real_is_closest.items() if not ok]
    assert not failing, f"a checkpoint is clearly closer to real music than real music on {failing}"
    assert escape(result.headline) in (tmp_path / "page" / "index.html").read_text()
    assert "24 samples per checkpoint" in result.headline


# ---- one path, one check, a quiet terminal ---------------------------------------------------------


@pytest.mark.parametrize("option", [("--top-p", "0"), ("--temperature", "-1"), ("--top-k", "-2"), ("--max-voices", "-1")])
def test_bad_sampling_settings_in_compare_are_one_line(option, tmp_path):
    result = CliRunner().invoke(app, ["compare", str(REFERENCE), "--epochs", "100,150", *option, "--out", str(tmp_path / "p")])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {option[0]}"), lines
    assert not (tmp_path / "p").exists()


def test_compare_help_explains_every_option():
    """Each option's own help text (not its type or its [default: ...]) says something, and
    --help shows it: the rendered text, boxes and wrapping removed, contains it whole."""
    import re

    import typer

    command = typer.main.get_command(app).commands["compare"]
    rendered = CliRunner().invoke(app, ["compare", "--help"]).output
    flat = " ".join(re.sub(r"[│╭╮╰╯─]", " ", rendered).split())
    options = [param for param in command.params if param.param_type_name == "option" and param.name != "help"]
    assert {"--temperature", "--top-k", "--top-p", "--samples", "--max-voices"} <= {o.opts[0] for o in options}
    for option in options:
        words = (option.help or "").split()
        assert len(words) >= 3, f"{option.opts[0]} has no help: {option.help!r}"
        assert option.opts[0] in flat and " ".join(words) in flat, f"--help does not show {option.opts[0]}'s help"


@pytest.mark.tensorflow
def test_generate_writes_nothing_to_stderr_but_its_own(tmp_path):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "composer"), "generate", str(REFERENCE), "--epoch", "150", "--num", "1",
         "--tokens", "40", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", f"unexpected stderr: {result.stderr[:500]}"
    assert "1 sample," in result.stdout
    bad = subprocess.run(
        [str(Path(sys.executable).parent / "composer"), "generate", str(REFERENCE), "--epoch", "150", "--top-p", "0"],
        capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 1 and bad.stderr.strip() == "error: --top-p 0: must be in (0, 1]"


def test_the_voice_ceiling_never_leaves_nothing_to_draw():
    """A long random walk under a ceiling of 4 (EOS aside): some token is always allowed."""
    from composer.tokens import EOS, Grammar, Vocabulary

    vocab = Vocabulary()
    rng = np.random.default_rng(7)
    for walk in range(3):
        grammar = Grammar(vocab, max_voices=4)
        grammar.advance(1)  # BOS
        for step in range(1500):
            allowed = grammar.allowed()
            allowed[EOS] = False
            assert allowed.any(), f"walk {walk}: nothing allowed at step {step}, time {grammar.time}"
            choices = np.flatnonzero(allowed)
            grammar.advance(int(rng.choice(choices)))
            assert int((grammar.note_end > grammar.time).sum()) <= 4


@pytest.mark.tensorflow
def test_max_voices_option_of_generate(tmp_path):
    """`composer generate --max-voices 2`: no new note starts while two already sound."""
    from composer.corpus import read_piece

    primer = CHORALES[0]
    result = CliRunner().invoke(app, ["generate", str(REFERENCE), "--epoch", "150", "--num", "4", "--bars", "2",
                                      "--primer", str(primer), "--max-voices", "2", "--seed", "3", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    primer_end = 2 * 4.0  # two bars of the chorale's 4/4
    for path in sorted(tmp_path.glob("*.mid")):
        notes = read_piece(path).notes
        # onsets from a bar after the primer on, once the primer's own (fuller) chords have ended
        assert max(sounding_at_onsets(notes, primer_end + 4)) <= 2, path.name
        assert any(n.start >= primer_end for n in notes)

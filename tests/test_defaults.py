"""The CLI's option defaults are the library's: a default changed in one place only fails here."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from composer import cli
from composer.compare import CompareSettings
from composer.config import Limits, TrainConfig
from composer.dataset import tokenize_corpus
from composer.demo import demo
from composer.generate import SampleSettings, generate
from composer.tokens import TokenizerConfig


def option_defaults(command) -> dict:
    return {name: p.default.default for name, p in inspect.signature(command).parameters.items() if hasattr(p.default, "default")}


def field_defaults(cls) -> dict:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def keyword_defaults(function) -> dict:
    return {name: p.default for name, p in inspect.signature(function).parameters.items() if p.default is not inspect.Parameter.empty}


@pytest.mark.parametrize(
    "command,defaults,at_least",
    [
        (cli.generate, field_defaults(SampleSettings), {"temperature", "top_k", "top_p", "seed", "max_voices"}),
        (cli.compare, field_defaults(SampleSettings), {"temperature", "top_k", "top_p", "seed", "max_voices"}),
        (cli.compare, field_defaults(CompareSettings), {"num", "bars", "samples", "primer_bars", "soundfont", "no_ceiling"}),
        (cli.generate, keyword_defaults(generate), {"epoch", "num", "primer_bars", "program", "musicxml", "wav", "bpm", "time_signature"}),
        (cli.demo, keyword_defaults(demo), {"epochs", "num", "bars"}),
        (cli.train, field_defaults(TrainConfig), {"epochs", "save_every", "strategy"}),
        (cli.tokenize, field_defaults(TokenizerConfig), {"velocity_bins"}),
        (cli.tokenize, {"max_quarters": Limits.max_quarters, "max_tokens": Limits.max_tokens, "max_mb": Limits.max_bytes / 1e6,
                        "validation": keyword_defaults(tokenize_corpus)["validation_share"]}, {"max_quarters", "max_tokens", "max_mb", "validation"}),
    ],
)
def test_option_defaults_equal_the_library_defaults(command, defaults, at_least):
    options = option_defaults(command)
    # epoch lists are text on the command line (checked below); train's None means "the preset's"
    overrides = {"save_at"} | ({name for name, value in options.items() if value is None} if command is cli.train else set())
    shared = sorted(set(options) & set(defaults) - overrides)
    assert at_least <= set(shared)
    assert {name: options[name] for name in shared} == {name: defaults[name] for name in shared}


@pytest.mark.parametrize("command,function", [(cli.train, None), (cli.demo, demo)])
def test_epoch_lists_equal_the_library_defaults(command, function):
    expected = TrainConfig.save_at if function is None else keyword_defaults(function)["save_at"]
    assert cli.parse_epochs(option_defaults(command)["save_at"]) == tuple(expected)


def test_compare_epochs_default_is_the_kept_epochs_of_a_default_run():
    assert cli.parse_epochs(option_defaults(cli.compare)["epochs"]) == TrainConfig.save_at

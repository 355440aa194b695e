"""The CLI's option defaults are the library's: a default changed in one place only fails here."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from composer import cli
from composer.compare import CompareSettings
from composer.generate import SampleSettings


def option_defaults(command) -> dict:
    return {name: p.default.default for name, p in inspect.signature(command).parameters.items() if hasattr(p.default, "default")}


def field_defaults(cls) -> dict:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


@pytest.mark.parametrize("command,settings", [(cli.generate, SampleSettings), (cli.compare, SampleSettings), (cli.compare, CompareSettings)])
def test_option_defaults_equal_the_settings_defaults(command, settings):
    options, fields = option_defaults(command), field_defaults(settings)
    shared = sorted(set(options) & set(fields))
    assert {"temperature", "top_k", "top_p", "seed"} <= set(shared)
    assert {name: options[name] for name in shared} == {name: fields[name] for name in shared}

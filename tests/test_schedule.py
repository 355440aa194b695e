"""The training recipe: the learning-rate schedule as a pure function, presets in run.json, resume."""

from __future__ import annotations

import inspect
import json
import math

import pytest

import composer.train
from composer.config import TrainConfig
from composer.train import learning_rate

from train_fixtures import TINY, history, invoke, train_cli


def rates(config: TrainConfig) -> list[float]:
    return [learning_rate(epoch, config) for epoch in range(1, config.epochs + 1)]


def test_cosine_warms_up_then_falls_to_its_floor_at_the_last_epoch():
    config = TrainConfig(epochs=150, learning_rate=2e-3, warmup_epochs=3, decay="cosine", final_lr_fraction=0.05)
    values = rates(config)
    assert values[:3] == pytest.approx([0.5e-3, 1e-3, 1.5e-3])
    assert values[3] == pytest.approx(2e-3 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi / 147))))
    assert max(values) <= 2e-3
    assert all(later <= earlier for earlier, later in zip(values[3:], values[4:]))
    assert values[-1] == pytest.approx(1e-4)
    assert values[99] > 3 * values[-1]  # epoch 100 still learns much faster than epoch 150


def test_the_schedule_depends_on_the_planned_epochs():
    short, long = TrainConfig(epochs=10, decay="cosine"), TrainConfig(epochs=20, decay="cosine")
    assert learning_rate(10, short) == pytest.approx(short.learning_rate * short.final_lr_fraction)
    assert learning_rate(10, long) > 5 * learning_rate(10, short)


def test_constant_is_the_peak_after_warm_up():
    config = TrainConfig(epochs=5, learning_rate=3e-3, warmup_epochs=1, decay="constant")
    assert rates(config) == pytest.approx([1.5e-3, 3e-3, 3e-3, 3e-3, 3e-3])


def test_more_epochs_on_resume_continue_from_the_current_rate_down_to_the_floor():
    config = TrainConfig(epochs=10, learning_rate=2e-3, warmup_epochs=2, decay="cosine")
    extended = config.extended_to(16, done=6)
    assert extended.planned() == ((0, 10), (6, 16))
    for epoch in range(1, 7):  # what was trained keeps its rates
        assert learning_rate(epoch, extended) == learning_rate(epoch, config)
    after = [learning_rate(epoch, extended) for epoch in range(6, 17)]
    assert all(later < earlier for earlier, later in zip(after, after[1:]))
    assert after[-1] == pytest.approx(2e-3 * config.final_lr_fraction)
    # the same epochs again adds nothing; a finished run extended starts from its floor
    assert config.extended_to(10, done=4).planned() == ((0, 10),)
    finished = config.extended_to(12, done=10)
    assert learning_rate(11, finished) == pytest.approx(learning_rate(10, config))


def test_old_run_json_without_a_recipe_loads_as_it_trained():
    old = {"epochs": 150, "save_at": [100, 150], "save_every": 0, "window": 256, "batch": 32,
           "learning_rate": 0.001, "clip_norm": 1.0, "transpose": 5, "seed": 0, "strategy": "default"}
    config = TrainConfig.from_dict(old)
    assert config.decay == "constant" and config.warmup_epochs == 0 and config.save_at == (100, 150)
    assert rates(config) == pytest.approx([1e-3] * 150)
    again = TrainConfig.from_dict(config.to_dict())
    assert again.planned() == ((0, 150),) and rates(again) == rates(config)


def test_presets_differ_only_where_the_recipe_says():
    """The small recipe is the one the README documents (windows of 64 in batches of 32, 2 epochs
    of warm-up to 4e-3, cosine decay to 5 %); everything else keeps the defaults that old runs
    trained with; a given option wins, an option left out (None) does not."""
    from dataclasses import asdict

    before = asdict(TrainConfig())
    small = asdict(TrainConfig.preset("small", epochs=7, window=None))
    changed = {key: value for key, value in small.items() if value != before[key]}
    assert changed == {"epochs": 7, "window": 64, "learning_rate": 4e-3, "warmup_epochs": 2, "decay": "cosine"}
    assert small["batch"] == 32 and small["final_lr_fraction"] == 0.05
    assert TrainConfig.preset("small", batch=8).batch == 8
    full = asdict(TrainConfig.preset("full"))
    assert {key for key, value in full.items() if value != before[key]} == {"window", "batch", "learning_rate", "warmup_epochs", "decay"}
    with pytest.raises(composer.ComposerError, match="unknown preset"):
        TrainConfig.preset("huge")


@pytest.mark.tensorflow
def test_recipe_lands_in_run_json_and_resume_after_an_interruption_is_exact(tmp_path, corpus, monkeypatch):
    """An interrupted cosine run resumed equals the uninterrupted run, epoch for epoch; then both,
    extended to more epochs, stay equal and record the added stretch of the schedule."""
    common = ("--save-at", "3", "--warmup-epochs", "1", "--learning-rate", "0.01")
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_cli(corpus, straight, "--epochs", "3", *common)
    settings = json.loads((straight / "run.json").read_text())["train"]
    assert settings["decay"] == "cosine" and settings["warmup_epochs"] == 1 and settings["learning_rate"] == 0.01
    assert settings["schedule"] == [[0, 3]]
    assert "window" in settings and "batch" in settings

    real_fit = composer.train.fit

    def fit_stopping_after_epoch_1(*args, **kwargs):
        bound = inspect.signature(real_fit).bind(*args, **kwargs)
        bound.apply_defaults()
        announce = bound.arguments["on_epoch"]

        def on_epoch(result):
            announce(result)
            if result.epoch == 1:
                raise KeyboardInterrupt  # as Ctrl-C right after epoch 1 was written

        bound.arguments["on_epoch"] = on_epoch
        return real_fit(*bound.args, **bound.kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(composer.train, "fit", fit_stopping_after_epoch_1)
        stopped = invoke("train", corpus, "--out", split, "--epochs", "3", *TINY, *common)
    assert stopped.exit_code == 130, stopped.output
    assert "--save-at 3" in stopped.output  # the printed resume command keeps the kept epochs
    assert len(history(split)) == 1
    train_cli(corpus, split, "--epochs", "3", "--resume")
    assert [row["loss"] for row in history(split)] == [row["loss"] for row in history(straight)]

    for run in (straight, split):
        train_cli(corpus, run, "--epochs", "5", "--save-at", "3,5", "--resume")
    assert [row["loss"] for row in history(split)] == [row["loss"] for row in history(straight)]
    assert json.loads((split / "run.json").read_text())["train"]["schedule"] == [[0, 3], [3, 5]]

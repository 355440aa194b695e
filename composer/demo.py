"""The whole pipeline on the bundled chorales, small enough for a laptop CPU: the README's first command.

Tokenize midi_data/ → train the small preset with a few kept epochs → compare them on one page,
and, when the repository's reference run is present, compare its epochs 10 and 150 too (hear it learn).
Running it again continues the demo run instead of starting over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from composer.compare import CompareSettings, compare
from composer.config import TrainConfig
from composer.train import train_run

BUNDLED = Path("midi_data/bach_chorales")
REFERENCE = Path("outputs/bach-small-reference")


@dataclass
class DemoResult:
    pages: list[Path] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


def demo(
    out: Path = Path("outputs/demo"),
    epochs: int = 8,
    save_at: tuple[int, ...] = (4, 8),
    num: int = 2,
    bars: float = 8,
    report: Callable[[str], None] = print,
    progress: Callable[[int, int], None] | None = None,
) -> DemoResult:
    result = DemoResult()
    resume = (out / "checkpoints" / "last.keras").exists()
    config = TrainConfig.preset("small", epochs=epochs, save_at=save_at)
    summary = train_run(BUNDLED, out, config, "small", resume=resume, report=report, progress=progress)
    result.written += summary.written
    settings = CompareSettings(num=num, bars=bars)
    page = compare(out, ",".join(str(e) for e in save_at), settings, report)
    result.pages.append(page.page)
    result.written += page.written
    if (REFERENCE / "checkpoints" / "epoch-0150.keras").exists():
        report(f"comparing the reference run {REFERENCE}: epoch 10 against epoch 150")
        reference = compare(REFERENCE, "10,150", settings, report)
        result.pages.append(reference.page)
        result.written += reference.written
    return result

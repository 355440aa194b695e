"""`composer --help` and every command's --help answer without importing the heavy stack.

Start-up is judged by what is imported, not by a clock (a busy 2-core machine decides a clock).
Each case runs the installed `composer` entry point in a fresh interpreter, so nothing imported
by the tests themselves can hide an import.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPOSER = Path(sys.executable).parent / "composer"
HEAVY = ("tensorflow", "keras", "numpy", "scipy", "sklearn", "music21", "pretty_midi", "matplotlib", "mido", "verovio")

PROBE = (
    "import runpy, sys\n"
    "sys.argv = sys.argv[1:]\n"
    "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\nexcept SystemExit as done:\n    code = done.code\n"
    "else:\n    code = 0\n"
    f"print('MODULES', code, len(sys.modules), ','.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
)


@pytest.mark.parametrize("command", [[], ["tokenize"], ["train"], ["corpus"], ["generate"], ["compare"], ["info"]], ids=lambda c: " ".join(c) or "composer")
def test_help_imports_no_heavy_library(command):
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(COMPOSER), *command, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert "Usage" in done.stdout, done.stderr
    _, code, count, heavy = next(line for line in done.stdout.splitlines() if line.startswith("MODULES ")).split(" ")
    assert code in ("0", "None"), done.stdout
    assert heavy == "", f"`composer {' '.join(command)} --help` imports {heavy}"
    if not command:
        assert int(count) < 400, f"`composer --help` imports {count} modules"


def test_python_dash_m_composer_is_the_same_command():
    done = subprocess.run([sys.executable, "-m", "composer", "info", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0 and "Usage:" in done.stdout and "run directory" in done.stdout, done.stderr

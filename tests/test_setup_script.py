"""scripts/setup.sh with a fake package manager: it waits for the package lock, and reports what is
really installed afterwards (another process may have installed a package while it waited)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FAKE_APT = """#!/bin/sh
echo "$@" >> "$STATE/apt.log"
case "$*" in *install*) [ "$INSTALLS" = yes ] && touch "$STATE/fluidsynth" ;; esac
case "$*" in *install*) exit "$INSTALL_EXIT" ;; esac
exit 0
"""
FAKE_LDCONFIG = """#!/bin/sh
[ -f "$STATE/fluidsynth" ] && echo "	libfluidsynth.so.3 (libc6,x86-64) => /usr/lib/libfluidsynth.so.3"
exit 0
"""


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A copy of the set-up script in a checkout whose .venv is already up to date."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", repo / "scripts" / "setup.sh")
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    digest = hashlib.sha256((repo / "pyproject.toml").read_bytes()).hexdigest()[:16]
    (repo / ".venv").mkdir()
    (repo / ".venv" / f".installed-{digest}").touch()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in {"apt-get": FAKE_APT, "ldconfig": FAKE_LDCONFIG, "id": "#!/bin/sh\necho 0\n", "python3": "#!/bin/sh\nexit 0\n"}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return repo


def set_up(repo: Path, installs: bool, install_exit: int) -> tuple[str, str]:
    state = repo.parent
    env = {**os.environ, "PATH": f"{state / 'bin'}:/usr/bin:/bin", "STATE": str(state),
           "INSTALLS": "yes" if installs else "no", "INSTALL_EXIT": str(install_exit)}
    done = subprocess.run(["bash", str(repo / "scripts" / "setup.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout, (state / "apt.log").read_text()


def test_setup_waits_for_the_package_lock_and_reports_the_install(checkout):
    output, apt = set_up(checkout, installs=True, install_exit=0)
    assert output.splitlines() == ["installing system packages: libfluidsynth3", "system packages now installed: libfluidsynth3"]
    assert [line.split()[:2] for line in apt.splitlines()] == [["-o", "DPkg::Lock::Timeout=300"]] * 2, apt


def test_setup_reports_a_package_another_process_installed_meanwhile(checkout):
    """apt-get gave up (another package manager held the lock), but the package is there now: no
    warning that audio falls back, while the page would say "audio fluidsynth"."""
    output, _ = set_up(checkout, installs=True, install_exit=100)
    assert "warning" not in output and "system packages now installed: libfluidsynth3" in output


def test_setup_warns_only_about_what_is_really_missing(checkout):
    output, _ = set_up(checkout, installs=False, install_exit=100)
    assert output.splitlines()[-1] == "warning: could not install libfluidsynth3; audio falls back to the built-in synthesizer"


def test_the_license_is_an_spdx_expression():
    """A TOML table made setuptools warn `project.license as a TOML table is deprecated` at every
    install; the SPDX string needs setuptools 77, and rules out a license classifier beside it."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 on

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    assert not [c for c in project["project"].get("classifiers", []) if c.startswith("License ::")]
    assert "setuptools>=77" in project["build-system"]["requires"]

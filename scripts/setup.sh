#!/usr/bin/env bash
# Sets up everything composer needs on Debian/Ubuntu: system libraries (when root), a virtual
# environment in .venv and the package with its dependencies. Safe to run again: it only
# reinstalls when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
want_browser=${1:-}

# The system packages that are missing right now (checked again after installing: what counts
# is what is there, whoever installed it).
missing_packages() {
  local missing=()
  command -v python3 >/dev/null || missing+=(python3)
  python3 -c "import ensurepip" 2>/dev/null || missing+=(python3-venv)
  ldconfig -p 2>/dev/null | grep -q libfluidsynth || missing+=(libfluidsynth3)
  if [ "$want_browser" = "--browser" ]; then
    command -v chromium >/dev/null || missing+=(chromium)
    command -v chromedriver >/dev/null || missing+=(chromium-driver)
  fi
  echo "${missing[*]-}"
}

# What going without a package means, in words.
consequence() {
  case "$1" in
    libfluidsynth3) echo "audio falls back to the built-in synthesizer" ;;
    chromium | chromium-driver) echo "the browser test of the comparison page is skipped" ;;
    *) echo "the virtual environment cannot be made" ;;
  esac
}

read -r -a wanted <<<"$(missing_packages)"
if [ ${#wanted[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing system packages: ${wanted[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # wait up to 5 minutes for another package manager (unattended upgrades, a second set-up)
    # instead of giving up at once on its lock
    wait_for_lock=(-o DPkg::Lock::Timeout=300)
    apt-get "${wait_for_lock[@]}" update -qq >/dev/null 2>&1 || echo "warning: apt-get update failed; installing from the package lists there are"
    apt-get "${wait_for_lock[@]}" install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null 2>&1 || true
  fi
  read -r -a still <<<"$(missing_packages)"
  installed=()
  for package in "${wanted[@]}"; do
    [[ " ${still[*]-} " == *" $package "* ]] || installed+=("$package")
  done
  [ ${#installed[@]} -eq 0 ] || echo "system packages now installed: ${installed[*]}"
  for package in "${still[@]}"; do
    if [ "$(id -u)" = 0 ]; then
      echo "warning: could not install $package; $(consequence "$package")"
    else
      echo "warning: $package is missing (run as root or install it); $(consequence "$package")"
    fi
  done
fi

stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi

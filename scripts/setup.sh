#!/usr/bin/env bash
# Sets up everything composer needs on Debian/Ubuntu: system libraries (when root), a virtual
# environment in .venv and the package with its dependencies. Safe to run again: it only
# reinstalls when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
want_browser=${1:-}

apt_packages=()
command -v python3 >/dev/null || apt_packages+=(python3)
python3 -c "import ensurepip" 2>/dev/null || apt_packages+=(python3-venv)
ldconfig -p 2>/dev/null | grep -q libfluidsynth || apt_packages+=(libfluidsynth3)
if [ "$want_browser" = "--browser" ]; then
  command -v chromium >/dev/null || apt_packages+=(chromium)
  command -v chromedriver >/dev/null || apt_packages+=(chromium-driver)
fi
if [ ${#apt_packages[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing system packages: ${apt_packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null \
      || echo "warning: could not install ${apt_packages[*]}; audio falls back to the built-in synthesizer"
  else
    echo "warning: missing ${apt_packages[*]} (run as root or install them); audio falls back to the built-in synthesizer"
  fi
fi

stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi

#!/usr/bin/env bash
# Set up, then run the whole pipeline on the bundled Bach chorales.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/composer demo "$@"

#!/usr/bin/env bash
# The test suite: set up (once), then run pytest (default run excludes @slow; pass -m slow etc.).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest -n 2 --dist loadfile -q -rfE "$@"

#!/usr/bin/env bash
# The main job: set up (once), then run the demo on the project's own example model.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
exec "$root/.venv/bin/bnnhw" demo "$@"

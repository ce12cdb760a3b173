#!/usr/bin/env bash
# Sets up .venv (scripts/setup.sh) and runs the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL=egl PYOPENGL_PLATFORM=egl
exec .venv/bin/python -m pytest tests -q --timeout=1200 -p no:cacheprovider --durations=25 "$@"

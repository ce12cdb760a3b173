#!/usr/bin/env bash
# Rewrites constraints.txt from .venv: run after the full test suite passed in that .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
{
  sed -n '1,4p' constraints.txt
  .venv/bin/python -m pip freeze --all --exclude-editable | grep -viE '^((pip|torch|triton|vlarl-fast)==|nvidia-|cuda-)'
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) pins"

# Sourced by scripts/demo and scripts/test: creates .venv in the checkout and installs simplexity into it.
# torch is installed first so that no later requirement pulls a CUDA build onto a CPU-only machine:
#   1. a torch wheel that pip can find without an index (pip's find-links, e.g. a local CPU wheel), else
#   2. on a machine without an NVIDIA driver, the CPU-only build from PyTorch's CPU index, else
#   3. the default build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SIMPLEXITY_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
EXTRAS="${1:-test}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment in $VENV" >&2
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip --disable-pip-version-check)
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing torch (CPU build unless an NVIDIA GPU is present)" >&2
  if "${PIP[@]}" install -q --no-index --no-deps "torch>=2.1" 2>/dev/null; then
    # a local wheel: now its dependencies (pinning the installed version keeps that build)
    "${PIP[@]}" install -q "torch==$("$VPY" -c 'from importlib.metadata import version; print(version("torch").split("+")[0])')"
  elif ! command -v nvidia-smi >/dev/null 2>&1; then
    "${PIP[@]}" install -q "torch>=2.1" --index-url "${SIMPLEXITY_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
  else
    "${PIP[@]}" install -q "torch>=2.1"
  fi
fi
STAMP="$VENV/.simplexity-$EXTRAS-$(cat "$ROOT/pyproject.toml" | cksum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ]; then
  echo "[setup] installing simplexity[$EXTRAS] (editable)" >&2
  "${PIP[@]}" install -q -e "$ROOT[$EXTRAS]"
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"

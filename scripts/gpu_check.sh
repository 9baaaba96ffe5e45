#!/bin/bash
# The GPU checks in one call (under 7 minutes on one H200): the `gpu`-marked tests that can run there,
# then one training step of a random Qwen2.5-1.5B-shaped student at 16K packed tokens
# (scripts/gpu_step.py: tokens/s, MFU, peak memory; fused vs full-logit CE; varlen vs dense mask).
# Usage: scripts/gpu_check.sh [OUT_DIR]        (default: runs/gpu_check; on a machine without CUDA
#        the tests skip and the step reports that it was skipped)
# Tests that need DeepSpeed, vLLM or flash-attn skip with their reason where those are missing.
set -uo pipefail
out=${1:-${OUT:-runs/gpu_check}}
mkdir -p "$out"
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=disabled

{
  echo "== environment"
  "$python" - <<'EOF'
import importlib.util, torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
for name in ("transformers", "deepspeed", "vllm", "flash_attn", "liger_kernel", "triton"):
    print(f"  {name}: {'present' if importlib.util.find_spec(name) else 'missing'}")
EOF
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

  echo "== gpu-marked tests"
  missing=()
  for module in deepspeed vllm; do
    "$python" -c "import $module" 2>/dev/null || missing+=("$module")
  done
  extra_tests=()
  if [[ " ${missing[*]} " == *" deepspeed "* ]]; then
    echo "skipped: tests/train/test_deepspeed.py (deepspeed is not installed here)"
  else
    extra_tests+=(tests/train/test_deepspeed.py)
  fi
  # shellcheck disable=SC2068
  timeout 120 "$python" -m pytest -p no:cacheprovider -q -rs -m gpu -o addopts="" \
    tests/train/test_gpu_paths.py tests/train/test_losses.py ${extra_tests[@]} 2>&1
  echo "pytest exit: $?"

  echo "== training step (Qwen2.5-1.5B shape, 16K packed tokens)"
  timeout 240 "$python" scripts/gpu_step.py --out "$out" 2>&1
  echo "gpu_step exit: $?"
} 2>&1 | tee "$out/gpu_check.log"

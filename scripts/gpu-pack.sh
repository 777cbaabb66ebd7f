#!/usr/bin/env bash
# Prepares what scripts/gpu-check.sh runs on a lent GPU machine, whose image has CUDA, Python
# with onnx/numpy/safetensors/pytest/torch, but not Debian's libraries ulc links (oneDNN,
# protobuf-c, cJSON): a Release build with the cuda backend, copied with those libraries into
# .gpu/ (ignored by git; a few tens of MB, under the device tool's 64 MiB carry).
#
#   scripts/gpu-pack.sh            # here, then: device run "scripts/gpu-check.sh" carry [".gpu"]
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DULC_CUDA=ON >build-gpu.cmake.log 2>&1 ||
  { tail -30 build-gpu.cmake.log; exit 1; }
grep -q "the cuda backend is built" build-gpu.cmake.log ||
  { echo "gpu-pack: no CUDA toolkit here: the cuda backend is not built" >&2; exit 1; }
cmake --build build-gpu -j "$JOBS" --target ulc
rm -rf .gpu
mkdir -p .gpu/bin .gpu/lib
cp build-gpu/ulc .gpu/bin/ulc
strip .gpu/bin/ulc
# every library ulc needs but the C library's own and the GPU driver's
ldd build-gpu/ulc | awk '$3 ~ /^\// {print $3}' | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libcuda.so*) ;;
    *) cp -L "$lib" .gpu/lib/ ;;
  esac
done
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >>.git/info/exclude
du -sh .gpu
.gpu/bin/ulc --version

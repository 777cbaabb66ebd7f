#!/usr/bin/env bash
# Prepares what scripts/gpu-check.sh runs on a lent GPU machine, whose image has CUDA, Python
# with onnx/numpy/safetensors/pytest/torch, but not Debian's libraries ulc links (oneDNN,
# protobuf-c, cJSON): a Release build with the cuda backend, copied with those libraries into
# .gpu/ (ignored by git; gzipped, about 18 MB, so that it and the repo stay under the device
# tool's 64 MiB).
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
strip -o .gpu/bin/ulc.real build-gpu/ulc
# every library ulc needs but the C and C++ runtimes (the device image's are newer, and Python
# there must keep its own) and the GPU driver's
ldd build-gpu/ulc | awk '$3 ~ /^\// {print $3}' | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libcuda.so*) ;;
    libstdc++.so*|libgcc_s.so*|libgomp.so*) ;;
    *) cp -L "$lib" .gpu/lib/ ;;
  esac
done
# compressed: the repo and what it carries travel within 64 MiB (oneDNN alone is 40 MB)
gzip -9 .gpu/bin/ulc.real .gpu/lib/*
# ulc is a wrapper: it unpacks once (gpu-check.sh's first call, before anything runs in
# parallel), then points ulc alone at the libraries — nothing else on the machine sees them
cat >.gpu/bin/ulc <<'WRAP'
#!/bin/sh
here=$(dirname "$(readlink -f "$0")")
dir="$here/../unpacked"
if [ ! -x "$dir/ulc.real" ]; then
  mkdir -p "$dir/lib" || exit 70
  for f in "$here"/../lib/*.gz; do gzip -dc "$f" >"$dir/lib/$(basename "$f" .gz)" || exit 70; done
  gzip -dc "$here/ulc.real.gz" >"$dir/ulc.real.tmp" && chmod +x "$dir/ulc.real.tmp" &&
    mv "$dir/ulc.real.tmp" "$dir/ulc.real" || exit 70
fi
LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$dir/ulc.real" "$@"
WRAP
chmod +x .gpu/bin/ulc
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >>.git/info/exclude
.gpu/bin/ulc --version
rm -rf .gpu/unpacked # made again on the device by the first call
du -sh .gpu

#!/usr/bin/env bash
# Every CMake build type builds warning-free (-Werror is on in all of them): Debug, Release and
# MinSizeRel here (RelWithDebInfo is `make build`'s, Debug with sanitizers `make asan`'s), each in
# build-types/<type>/. gcc's -O3/-Os warnings (maybe-uninitialized, format-truncation) differ
# from -O2's, so each optimisation level is its own check. Run by `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
for bt in Debug Release MinSizeRel; do
  dir=build-types/$bt
  log=$dir.log
  mkdir -p build-types
  # nvcc is slow on two cores: the CUDA backend's nvcc build is checked in the normal build and in
  # Release (the wheel's); Debug and MinSizeRel build its sources for the emulator only (g++)
  cuda=ON
  [ "$bt" = Release ] || cuda=OFF
  if ! { cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=$bt -DULC_CUDA=$cuda && cmake --build "$dir" -j "$JOBS"; } >"$log" 2>&1; then
    grep -E "warning|error" "$log" | head -40 >&2 || tail -40 "$log" >&2
    echo "build types: $bt does not build warning-free (log: $log)" >&2
    exit 1
  fi
  if grep -qE "warning:" "$log"; then
    grep -E "warning:" "$log" | head -40 >&2
    echo "build types: $bt builds with warnings (log: $log)" >&2
    exit 1
  fi
  echo "build types: $bt ok"
done

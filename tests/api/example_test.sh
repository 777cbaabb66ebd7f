#!/usr/bin/env bash
# The C API as a user gets it: install this build into a temporary prefix, build
# docs/examples/forget_class.c against the installed package (pkg-config: the shared library;
# a CMake project with find_package(ulc): ulc::ulc and ulc::ulc_static), run each on the digits
# model (forget digit 3), and check
#   - the exit code, the forget-set accuracy after (<= 5 %) and the retain-test one (>= 90 %);
#   - the saved model's initializers equal those `ulc IN --forget models/digits/forget_digit.json`
#     writes (the example runs that spec's passes), and the report's scores (accuracies, features
#     against the input, relearning, attacks) equal the CLI's: the API's teacher must be the
#     original model, not one that unlearning changed.
# Usage: example_test.sh SRC BUILD CC LIBDIR SANITIZE_FLAGS PYTHON
set -euo pipefail
src=$1 build=$2 cc=$3 libdir=$4 san=$5 py=$6
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ulc_api_example.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail() { echo "example_test: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" >/dev/null
for f in include/ulc.h "$libdir/libulc.so.0" "$libdir/libulc.a" "$libdir/pkgconfig/ulc.pc" \
         "$libdir/cmake/ulc/ulcConfig.cmake" "$libdir/cmake/ulc/ulcConfigVersion.cmake" bin/ulc; do
  [ -e "$prefix/$f" ] || fail "not installed: $f"
done

# pkg-config, shared
export PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig
# shellcheck disable=SC2046,SC2086
"$cc" -std=c11 -Wall -Wextra -Werror -pedantic $san "$src/docs/examples/forget_class.c" \
  $(pkg-config --cflags ulc) -o "$tmp/fc_pkgconfig" $(pkg-config --libs ulc)
pkg-config --static --libs ulc | grep -q -- '-ldnnl' || fail "ulc.pc: Libs.private lacks -ldnnl"

# CMake, shared and static
mkdir -p "$tmp/proj"
cp "$src/docs/examples/forget_class.c" "$tmp/proj/"
cat > "$tmp/proj/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.20)
project(forget_class C)
find_package(ulc 0.1 REQUIRED CONFIG)
add_executable(fc_shared forget_class.c)
target_link_libraries(fc_shared PRIVATE ulc::ulc)
add_executable(fc_static forget_class.c)
target_link_libraries(fc_static PRIVATE ulc::ulc_static)
CM
cmake -S "$tmp/proj" -B "$tmp/proj/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_C_FLAGS="$san" -DCMAKE_EXE_LINKER_FLAGS="$san" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tmp/proj/build" >/dev/null
readelf -d "$tmp/proj/build/fc_static" | grep -q 'libulc' && fail "fc_static needs libulc.so"
readelf -d "$tmp/proj/build/fc_shared" | grep -q 'libulc.so.0' || fail "fc_shared does not use libulc.so.0"

# the CLI on the equivalent spec
cd "$src"
"$build/ulc" models/digits/digits_resnet.onnx --forget models/digits/forget_digit.json \
  -o "$tmp/cli.onnx" --report "$tmp/cli.json" -q >/dev/null

export LD_LIBRARY_PATH=$prefix/$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for exe in "$tmp/fc_pkgconfig" "$tmp/proj/build/fc_shared" "$tmp/proj/build/fc_static"; do
  name=$(basename "$exe")
  rc=0
  "$exe" models/digits/digits_resnet.onnx models/digits/train.safetensors \
    models/digits/test.safetensors 3 "$tmp/$name.onnx" "$tmp/$name.json" > "$tmp/$name.out" || rc=$?
  cat "$tmp/$name.out"
  [ "$rc" -eq 0 ] || fail "$name exited with $rc"
  grep -q "^saved $tmp/$name.onnx" "$tmp/$name.out" || fail "$name: no 'saved' line"
  "$py" - "$tmp/$name.onnx" "$tmp/cli.onnx" "$tmp/$name.json" "$tmp/cli.json" "$tmp/$name.out" <<'PY'
import json, re, sys
import numpy as np
import onnx
from onnx import numpy_helper
out, cli, rep, cli_rep, stdout = sys.argv[1:]
def inits(path):
    m = onnx.load(path)
    return [(t.name, numpy_helper.to_array(t)) for t in m.graph.initializer], m
a, ma = inits(out)
b, mb = inits(cli)
assert [n for n, _ in a] == [n for n, _ in b], "initializer names or order differ"
for (n, x), (_, y) in zip(a, b):
    assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), f"initializer {n} differs"
assert [(n.op_type, list(n.input), list(n.output)) for n in ma.graph.node] == \
       [(n.op_type, list(n.input), list(n.output)) for n in mb.graph.node], "nodes differ"
hist = json.loads({p.key: p.value for p in ma.metadata_props}["ulc_history"])
assert hist[-1]["forget"] == {"classes": [3]} and hist[-1]["method"] == "rfa", hist
r, c = json.load(open(rep)), json.load(open(cli_rep))
acc = r["accuracy"]
assert acc["after"]["Df"] <= 0.05, f"forget-set accuracy after: {acc['after']['Df']}"
assert acc["after"]["Drt"] >= 0.90, f"retain-test accuracy after: {acc['after']['Drt']}"
for k in ("accuracy", "mia", "per_class", "h_mean", "features", "relearn", "hyperparameters", "splits"):
    assert r[k] == c[k], f"report '{k}' differs from the CLI's:\n{r[k]}\n{c[k]}"
assert r["input"] == {"path": "models/digits/digits_resnet.onnx", "sha256": c["input"]["sha256"],
                      "weights_sha256": c["input"]["weights_sha256"]}, r["input"]
assert c["output"]["weights_sha256"] == hist[-1]["weights_sha256"], "the API's weights hash differs"
text = open(stdout).read()
df = re.search(r"forget set \(Df\): +([\d.]+)% -> +([\d.]+)%", text)
drt = re.search(r"retain, test \(Drt\): +([\d.]+)% -> +([\d.]+)%", text)
assert df and drt, text
assert float(df.group(2)) <= 5.0 and float(drt.group(2)) >= 90.0, text
print(f"{out}: {len(a)} initializers equal to the CLI's; Df {df.group(1)}% -> {df.group(2)}%, "
      f"Drt {drt.group(1)}% -> {drt.group(2)}%")
PY
done
echo "example_test: ok"

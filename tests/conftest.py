"""Shared pytest fixtures for ulc's Python test suites.

ULC_BIN names the ulc binary under test (ctest sets it: the normal build and the ASan build
both run these suites); ULC_FIXTURE_DIR is where generated fixtures are cached between runs.
"""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def ulc_bin() -> str:
    # absolute, so that runs with another working directory find it too
    return os.path.abspath(os.environ.get("ULC_BIN", str(ROOT / "build" / "ulc")))


def run_ulc(*args, check=False, timeout=600, cwd=None):
    """Runs ulc with args; returns the CompletedProcess (text mode)."""
    proc = subprocess.run([ulc_bin(), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"ulc {' '.join(map(str, args))} exited {proc.returncode}:\n"
                             f"{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def ulc():
    path = ulc_bin()
    if not os.access(path, os.X_OK):
        pytest.fail(f"ulc binary not found at {path} (build first, or set ULC_BIN)")
    return run_ulc


@pytest.fixture(scope="session")
def fixture_dir():
    d = Path(os.environ.get("ULC_FIXTURE_DIR", ROOT / "build" / "fixtures"))
    d.mkdir(parents=True, exist_ok=True)
    return d


# The slow cases (@pytest.mark.slow: end-to-end runs of ten seconds and more under ASan, whole
# training runs, every method on a model) run once per `make test`: in the normal build, not
# again under ASan+UBSan, whose suite (tests/CMakeLists.txt) sets ULC_SLOW=skip. Each code path
# they take also has a fast case (few epochs, a few rows) that the sanitizers do run. ULC_SLOW:
# "skip" deselects them (`make test-fast`), "only" runs nothing else, anything else runs all.
def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a long end-to-end case, run in the normal build "
                            "only (ULC_SLOW=skip deselects it)")


def pytest_collection_modifyitems(config, items):
    mode = os.environ.get("ULC_SLOW", "")
    if mode not in ("skip", "only"):
        return
    keep, drop = [], []
    for it in items:
        slow = it.get_closest_marker("slow") is not None
        (drop if slow == (mode == "skip") else keep).append(it)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep

"""The ONNX backend node tests run by ulc's CPU backend (`ulc run`), judged against
node_expected_failures.txt (run_node_tests.py has the rules and the failure categories):

  test_node[<dir>]      one per node-test directory whose model uses only ops `ulc ops` claims:
                        passes when the case passes and is not listed; a listed case must fail,
                        with the listed category (so a fixed case forces the list to be updated
                        and the list never hides a regression of another kind);
  test_claimed_ops_...  every claimed op is exercised by at least one node test that runs (or
                        is in run_node_tests.OPS_WITHOUT_NODE_TESTS with the reason);
  test_expected_...     the list is well-formed and names only node tests that run;
  test_ops_md_...       docs/ops.md is what run_node_tests.py writes for these results;
  and tests of the harness itself: a wrong output (value, dtype, shape, NaN, integer, bool) is
  caught, end to end through ulc too, and the list's rules cannot be satisfied by a pass.

ulc runs in a pool of concurrent processes (one per core, `--threads 1` each), once per session
for the cases selected; the inputs' safetensors files are cached in ULC_FIXTURE_DIR.
"""
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import ulc_bin

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_node_tests as R  # noqa: E402


def _claimed():
    try:
        return R.claimed_ops(ulc_bin()), None
    except Exception as e:  # reported by the tests, not at collection
        return None, f"{type(e).__name__}: {e}"


CLAIMED, CLAIM_ERROR = _claimed()
CASES = R.all_cases()
ELIGIBLE = [c for c in CASES if CLAIMED and R.eligible(c, CLAIMED)]
BY_NAME = {c.name: c for c in ELIGIBLE}


def _params():
    if CLAIM_ERROR:
        return [pytest.param(None, id="NO-ULC-OPS")]
    if not ELIGIBLE:
        return [pytest.param(None, id="NO-ELIGIBLE-NODE-TESTS")]
    return [pytest.param(c.name, id=c.name) for c in ELIGIBLE]


@pytest.fixture(scope="session")
def expected():
    return R.load_expected()


@pytest.fixture(scope="session")
def results(request, fixture_dir):
    """{name: Result} for the node tests this session needs (all of them when the ops.md check
    is selected), run concurrently once."""
    assert CLAIMED, f"`ulc ops` failed: {CLAIM_ERROR}"
    items = request.session.items
    want = set()
    for item in items:
        fn = getattr(item, "originalname", None)
        if fn == "test_ops_md_is_current":
            want = set(BY_NAME)
            break
        cs = getattr(item, "callspec", None)
        if cs and fn == "test_node" and cs.params.get("case"):
            want.add(cs.params["case"])
    cases = [BY_NAME[n] for n in sorted(want)]
    jobs = int(os.environ.get("ULC_TEST_JOBS", 0)) or os.cpu_count() or 1
    return R.run_all(ulc_bin(), cases, R.cache_dir(fixture_dir), jobs)


@pytest.mark.parametrize("case", _params())
def test_node(case, results, expected):
    assert case is not None, (f"`ulc ops` failed: {CLAIM_ERROR}" if CLAIM_ERROR else
                              f"no node test under {R.NODE_DIR} uses only claimed ops")
    msg = R.check_outcome(results[case], expected)
    assert msg is None, f"{case}: {msg}"


def test_claimed_ops_have_node_tests():
    assert CLAIMED, f"`ulc ops` failed: {CLAIM_ERROR}"
    assert CLAIMED == sorted(CLAIMED) and len(set(CLAIMED)) == len(CLAIMED), \
        "`ulc ops` must list each op once, sorted"
    untested = [op for op in CLAIMED if not any(op in c.ops for c in ELIGIBLE)]
    unexplained = [op for op in untested if op not in R.OPS_WITHOUT_NODE_TESTS]
    assert not unexplained, (f"claimed ops no runnable node test exercises (add node tests or "
                             f"explain them in OPS_WITHOUT_NODE_TESTS): {unexplained}")
    stale = [op for op in R.OPS_WITHOUT_NODE_TESTS if op not in untested]
    assert not stale, f"OPS_WITHOUT_NODE_TESTS lists ops that are not claimed or have node tests: {stale}"


def test_expected_failures_list_is_valid():
    assert R.EXPECTED_FILE.exists(), f"{R.EXPECTED_FILE} is missing"
    exp = R.parse_expected(R.EXPECTED_FILE.read_text())  # raises on a malformed line
    assert CLAIMED, f"`ulc ops` failed: {CLAIM_ERROR}"
    stale = sorted(n for n in exp if n not in BY_NAME)
    assert not stale, ("node_expected_failures.txt lists tests that do not run (no such node "
                       f"test, or it uses an op ulc does not claim): {stale}")


def test_ops_md_is_current(results, expected):
    """docs/ops.md is regenerated whenever the results or the list change."""
    assert not R.discrepancies(results, expected), "fix the failing test_node cases first"
    want = R.ops_markdown(CLAIMED, CASES, results, expected)
    have = R.OPS_MD.read_text() if R.OPS_MD.exists() else ""
    assert have == want, ("docs/ops.md is out of date: run "
                          "`.venv/bin/python tests/conformance/run_node_tests.py`")


# ---------------------------------------------------------------- the harness itself

def _tp(arr, dtype=None):
    if dtype is None:
        return numpy_helper.from_array(np.asarray(arr))
    return helper.make_tensor("t", dtype, np.shape(arr), np.asarray(arr).ravel().tolist())


def _got(arr, dt=None):
    arr = np.asarray(arr)
    dt = dt or {np.dtype(v): k for k, v in R.ST_STORAGE.items()
                if k not in ("BF16", "F8_E4M3", "F8_E5M2")}[arr.dtype]
    return dt, arr.shape, np.ascontiguousarray(arr).tobytes()


def test_compare_accepts_what_onnx_accepts():
    x = np.array([1.0, -2.0, np.nan, np.inf, -np.inf, 0.0, 1e-8], np.float32)
    assert R.compare("y", _got(x), _tp(x)) is None
    # within rtol 1e-3 of the reference, and within atol 1e-7 of zero
    assert R.compare("y", _got(x * np.float32(1.0009)), _tp(x)) is None
    assert R.compare("y", _got(np.float32([5e-8])), _tp(np.float32([0.0]))) is None
    assert R.compare("y", _got(np.zeros((0, 3), np.float32)), _tp(np.zeros((0, 3), np.float32))) is None
    assert R.compare("y", _got(np.int64(7)), _tp(np.int64(7))) is None
    # bfloat16 bits round trip: 1.5 is 0x3FC0
    assert R.compare("y", ("BF16", (1,), np.uint16([0x3FC0]).tobytes()),
                     _tp([1.5], TensorProto.BFLOAT16)) is None


@pytest.mark.parametrize("got,ref,category", [
    (np.float32([1.0, 2.0]), np.float32([1.0, 2.003]), "values"),       # 1.5e-3 relative
    (np.float32([1e-6]), np.float32([0.0]), "values"),                  # past atol
    (np.float32([np.nan, 1.0]), np.float32([1.0, 1.0]), "values"),      # NaN where a number is
    (np.float32([1.0]), np.float32([np.nan]), "values"),                # a number where NaN is
    (np.float32([np.inf]), np.float32([-np.inf]), "values"),
    (np.float32([np.inf]), np.float32([3e38]), "values"),
    (np.int64([1, 2, 3]), np.int64([1, 2, 4]), "values"),               # integers exact
    (np.int32([1000000]), np.int32([1000001]), "values"),               # even within rtol
    (np.bool_([True, False]), np.bool_([True, True]), "values"),
    (np.float64([1.0]), np.float32([1.0]), "dtype"),
    (np.int32([1]), np.int64([1]), "dtype"),
    (np.float32([[1.0, 2.0]]), np.float32([1.0, 2.0]), "shape"),
    (np.float32(1.0), np.float32([1.0]), "shape"),                     # rank 0 vs rank 1
    (np.float16([1.0, 2.0]), np.float16([1.0, 2.5]), "values"),
])
def test_compare_catches_wrong_outputs(got, ref, category):
    bad = R.compare("y", _got(got), _tp(ref))
    assert bad is not None and bad[0] == category, bad


def test_safetensors_writer_matches_the_library(tmp_path):
    """run_node_tests' writer gives files the safetensors library reads back exactly (and its
    reader reads the library's files)."""
    from safetensors.numpy import load_file, save_file
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.int64([-1, 5]),
              "c": np.bool_([[True], [False]]), "d": np.float16(2.5), "e": np.zeros((0, 4), np.uint8)}
    R.st_write(tmp_path / "ours.safetensors",
               {k: _got(v) for k, v in arrays.items()})
    back = load_file(str(tmp_path / "ours.safetensors"))
    assert back.keys() == arrays.keys()
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and np.array_equal(back[k], v), k
    save_file(arrays, str(tmp_path / "lib.safetensors"))
    assert (tmp_path / "lib.safetensors").read_bytes() == (tmp_path / "ours.safetensors").read_bytes()
    for k, (dt, shape, data) in R.st_read(tmp_path / "lib.safetensors").items():
        assert np.array_equal(R.st_to_numpy(dt, shape, data), arrays[k]), k


def test_outcome_rules():
    exp = R.parse_expected("# comment\n\ntest_a\tvalues: off by one\ntest_b\tunsupported: x\n")
    assert exp == {"test_a": ("values", "values: off by one"), "test_b": ("unsupported", "unsupported: x")}
    ok, values, unsup = R.Result("test_a"), R.Result("test_a", "values", "d"), R.Result("test_a", "unsupported", "d")
    assert R.check_outcome(values, exp) is None
    assert "remove it from the list" in R.check_outcome(ok, exp)       # a fixed case
    assert "fails with 'unsupported'" in R.check_outcome(unsup, exp)   # another failure
    assert R.check_outcome(R.Result("test_c"), exp) is None
    assert "failed" in R.check_outcome(R.Result("test_c", "crash", "SEGV"), exp)
    for bad in ["test_a values", "test_a\tnonsense: x", "test_a\tvalues: x\ntest_a\tvalues: y"]:
        with pytest.raises(ValueError):
            R.parse_expected(bad)


WRONG_INPUT_CANDIDATES = ["test_relu", "test_add", "test_sigmoid", "test_exp", "test_abs"]


def test_wrong_output_fails_end_to_end(tmp_path, fixture_dir):
    """A node test whose inputs are changed must fail through the same path test_node uses:
    the harness compares ulc's output, not something that always agrees."""
    assert CLAIMED, f"`ulc ops` failed: {CLAIM_ERROR}"
    names = [n for n in WRONG_INPUT_CANDIDATES if n in BY_NAME]
    assert names, f"none of {WRONG_INPUT_CANDIDATES} runs (are Relu/Add claimed?)"
    case = BY_NAME[names[0]]
    ds = case.datasets()[0]
    cache = R.cache_dir(fixture_dir)
    good = R.run_dataset(ulc_bin(), case, ds, cache, tmp_path)
    assert good.passed, f"{case.name} itself fails: {good}"
    tensors = R.st_read(R.input_file(case, ds, cache))
    changed = {}
    for name, (dt, shape, data) in tensors.items():
        assert dt == "F32", f"{case.name}: input {name} is {dt}"
        x = np.frombuffer(data, np.float32) + np.float32(3.0)
        changed[name] = (dt, shape, x.tobytes())
    feed = tmp_path / "changed.safetensors"
    R.st_write(feed, changed)
    bad = R.run_dataset(ulc_bin(), case, ds, cache, tmp_path, feed=feed)
    assert bad.category == "values", f"{case.name} with changed inputs: {bad}"

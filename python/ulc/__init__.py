"""ulc from Python: the public C API (include/ulc.h) through ctypes, and the ``ulc`` command.

    import ulc
    report = ulc.forget("digits_resnet.onnx", "forget_digit.json", "digits_forget3.onnx")
    print(report["accuracy"]["after"]["Df"])        # the forget set's accuracy after: ~0
    ulc.merge("gpt2/", ["adapter/"], "merged/")      # PEFT LoRA adapters baked into the weights
    ulc.convert("vit/", "vit.onnx", passes="cleanup")

The wheel carries libulc.so.0 (ulc/_lib/, loaded here) and the ``ulc`` executable (ulc/_bin/,
run by the ``ulc`` console command, ulc/_cli.py); the system libraries they need that manylinux
does not promise are in ulc.libs/ beside the package. No compiled Python extension: the module
is plain Python over the C library, and a failing call raises an ``ulc.Error`` subclass with the
library's status and message. Reference: docs/python.md.

From a source tree (no wheel), ULC_LIBRARY names the libulc.so.0 to load and ULC_BIN the
executable, e.g. ``ULC_LIBRARY=build/libulc.so.0 PYTHONPATH=python python3 -c 'import ulc'``.
"""
import ctypes
import enum
import json
import math
import operator
import os
import threading

try:
    from ulc._version import __version__  # written by scripts/build_wheel.py
except ImportError:  # a source tree
    __version__ = "0+source"

__all__ = ["forget", "merge", "convert", "version", "find_ulc_bin", "Status", "Error",
           "InvalidArgumentError", "ParseError", "InvalidInputError", "InputOutputError",
           "UnsupportedError", "OutOfMemoryError", "StoppedError", "InternalError"]

_HERE = os.path.dirname(os.path.abspath(__file__))


# ---- errors -------------------------------------------------------------------------------------

class Status(enum.IntEnum):
    """include/ulc.h's ulc_status."""
    OK = 0
    INVALID_ARG = 1   # the caller passed something unusable (usage errors, bad options)
    PARSE = 2         # an input file is malformed or not of the expected format
    INVALID = 3       # well-formed input that breaks a rule (graph verifier, size mismatch)
    IO = 4            # open/read/write/rename failed
    UNSUPPORTED = 5   # valid input that ulc does not handle (yet)
    NOMEM = 6         # allocation failed or a size is absurd
    INTERRUPTED = 7   # stopped by a signal or a stop flag
    INTERNAL = 8      # a ulc bug


class Error(Exception):
    """A failed ulc call: ``status`` (a Status), ``message`` (the library's "what, where")."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message

    def __str__(self):
        return f"{self.message} ({_status_name(self.status)})"


class InvalidArgumentError(Error):
    """ULC_ERR_INVALID_ARG: an unusable argument or option (an unknown pass, a bad list)."""


class ParseError(Error):
    """ULC_ERR_PARSE: an input file is malformed or not of the expected format."""


class InvalidInputError(Error):
    """ULC_ERR_INVALID: well-formed input that breaks a rule (data that does not fit the model)."""


class InputOutputError(Error):
    """ULC_ERR_IO: a file could not be opened, read, written or renamed."""


class UnsupportedError(Error):
    """ULC_ERR_UNSUPPORTED: valid input that ulc does not handle (yet)."""


class OutOfMemoryError(Error):
    """ULC_ERR_NOMEM: an allocation failed or a size is absurd."""


class StoppedError(Error):
    """ULC_ERR_INTERRUPTED: the run was stopped."""


class InternalError(Error):
    """ULC_ERR_INTERNAL: a ulc bug."""


_ERRORS = {Status.INVALID_ARG: InvalidArgumentError, Status.PARSE: ParseError,
           Status.INVALID: InvalidInputError, Status.IO: InputOutputError,
           Status.UNSUPPORTED: UnsupportedError, Status.NOMEM: OutOfMemoryError,
           Status.INTERRUPTED: StoppedError, Status.INTERNAL: InternalError}


def _status_name(status):
    try:
        return _lib().ulc_status_str(int(status)).decode()
    except (OSError, Error):
        return f"status {int(status)}"


# ---- the library --------------------------------------------------------------------------------

class _Ctx(ctypes.Structure):
    pass


class _Model(ctypes.Structure):
    pass


class _Request(ctypes.Structure):
    pass


class _Result(ctypes.Structure):
    pass


_P = ctypes.POINTER
_c_str = ctypes.c_char_p
# name: (restype, argtypes) of every include/ulc.h function the module calls
_SIGNATURES = {
    "ulc_version": (_c_str, []),
    "ulc_status_str": (_c_str, [ctypes.c_int]),
    "ulc_ctx_create": (ctypes.c_int, [_P(_P(_Ctx))]),
    "ulc_ctx_free": (None, [_P(_Ctx)]),
    "ulc_ctx_message": (_c_str, [_P(_Ctx)]),
    "ulc_ctx_set_allow_external_outside": (None, [_P(_Ctx), ctypes.c_int]),
    "ulc_model_load": (ctypes.c_int, [_c_str, _P(_P(_Model)), _P(_Ctx)]),
    "ulc_model_save": (ctypes.c_int, [_P(_Model), _c_str, _P(_Ctx)]),
    "ulc_model_free": (None, [_P(_Model)]),
    "ulc_model_apply": (ctypes.c_int, [_P(_Model), _c_str, _P(_Ctx)]),
    "ulc_request_from_spec": (ctypes.c_int, [_c_str, _P(_P(_Request)), _P(_Ctx)]),
    "ulc_request_create": (ctypes.c_int, [_c_str, _P(_P(_Request)), _P(_Ctx)]),
    "ulc_request_forget_classes": (ctypes.c_int, [_P(_Request), _P(ctypes.c_int64), ctypes.c_int,
                                                  _P(_Ctx)]),
    "ulc_request_forget_rows": (ctypes.c_int, [_P(_Request), _P(ctypes.c_int64), ctypes.c_int64,
                                               _P(_Ctx)]),
    "ulc_request_set_test_data": (ctypes.c_int, [_P(_Request), _c_str, _P(_Ctx)]),
    "ulc_request_set_passes": (ctypes.c_int, [_P(_Request), _c_str, _P(_Ctx)]),
    "ulc_request_set_seed": (None, [_P(_Request), ctypes.c_uint64]),
    "ulc_request_set_threads": (None, [_P(_Request), ctypes.c_int]),
    "ulc_request_free": (None, [_P(_Request)]),
    "ulc_forget": (ctypes.c_int, [_P(_Model), _P(_Request), _P(_P(_Result)), _P(_Ctx)]),
    "ulc_result_report": (_c_str, [_P(_Result)]),
    "ulc_result_free": (None, [_P(_Result)]),
    "ulc_merge": (ctypes.c_int, [_c_str, _P(_c_str), _P(ctypes.c_double), ctypes.c_int, _c_str,
                                 ctypes.c_uint, ctypes.c_int, _P(_Ctx)]),
}
_MERGE_UNMERGE, _MERGE_UNTIE, _MERGE_IN_PLACE = 1, 2, 4

_loaded = None
_load_lock = threading.Lock()


def _library_path():
    env = os.environ.get("ULC_LIBRARY")
    return env if env else os.path.join(_HERE, "_lib", "libulc.so.0")


def _lib():
    """libulc.so.0, loaded once, its functions typed."""
    global _loaded
    with _load_lock:
        if _loaded is None:
            # As the ulc command does (docs/api.md): waiting OpenMP threads spin 10,000 rounds,
            # not libgomp's default of milliseconds. libgomp reads this once, when it loads.
            if "OMP_WAIT_POLICY" not in os.environ:
                os.environ.setdefault("GOMP_SPINCOUNT", "10000")
            lib = ctypes.CDLL(_library_path())
            for name, (restype, argtypes) in _SIGNATURES.items():
                fn = getattr(lib, name)
                fn.restype, fn.argtypes = restype, argtypes
            _loaded = lib
        return _loaded


def version():
    """The library's version ("0.1.0")."""
    return _lib().ulc_version().decode()


def find_ulc_bin():
    """The path of the ``ulc`` executable this package carries (or ULC_BIN's)."""
    env = os.environ.get("ULC_BIN")
    path = env if env else os.path.join(_HERE, "_bin", "ulc")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: the ulc executable is missing (a source tree: set "
                                "ULC_BIN)")
    return path


def _path(p, what):
    if p is None:
        raise InvalidArgumentError(Status.INVALID_ARG, f"no {what} given")
    b = os.fsencode(p)
    if not b:
        raise InvalidArgumentError(Status.INVALID_ARG, f"no {what} given")
    return b


class _Session:
    """A ulc_ctx and the handles one call made, all freed on exit; ``check`` raises on failure."""

    def __init__(self, allow_external_outside=False):
        self.lib = _lib()
        self.ctx = _P(_Ctx)()
        self.handles = []
        if self.lib.ulc_ctx_create(ctypes.byref(self.ctx)) != Status.OK:
            raise OutOfMemoryError(Status.NOMEM, "out of memory (context)")
        if allow_external_outside:
            self.lib.ulc_ctx_set_allow_external_outside(self.ctx, 1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for free, h in reversed(self.handles):
            free(h)
        self.lib.ulc_ctx_free(self.ctx)

    def own(self, handle, free):
        self.handles.append((free, handle))
        return handle

    def check(self, status):
        if status != Status.OK:
            msg = self.lib.ulc_ctx_message(self.ctx).decode("utf-8", "replace")
            try:
                st = Status(status)
            except ValueError:
                st = Status.INTERNAL
            raise _ERRORS.get(st, Error)(st, msg)

    def load(self, path):
        m = _P(_Model)()
        self.check(self.lib.ulc_model_load(_path(path, "model"), ctypes.byref(m), self.ctx))
        return self.own(m, self.lib.ulc_model_free)


def _int64s(values, what):
    """An int64 array of an int or a sequence of ints (numpy's too; no floats, no strings)."""
    try:
        vals = [operator.index(values)] if not hasattr(values, "__iter__") else \
            [operator.index(v) for v in values]
    except TypeError:
        raise InvalidArgumentError(Status.INVALID_ARG,
                                   f"{what}: expected integers, got {values!r}") from None
    return (ctypes.c_int64 * max(len(vals), 1))(*vals), len(vals)


def _request(s, spec, data, classes, rows, test_data, passes):
    """The ulc_request of forget()'s arguments: a spec file, or the data and a forget set."""
    lib, rq = s.lib, _P(_Request)()
    if spec is not None:
        s.check(lib.ulc_request_from_spec(_path(spec, "spec"), ctypes.byref(rq), s.ctx))
        return s.own(rq, lib.ulc_request_free)
    s.check(lib.ulc_request_create(_path(data, "training data"), ctypes.byref(rq), s.ctx))
    s.own(rq, lib.ulc_request_free)
    if classes is not None:
        arr, n = _int64s(classes, "classes")
        s.check(lib.ulc_request_forget_classes(rq, arr, n, s.ctx))
    else:
        arr, n = _int64s(rows, "rows")
        s.check(lib.ulc_request_forget_rows(rq, arr, n, s.ctx))
    if test_data is not None:
        s.check(lib.ulc_request_set_test_data(rq, _path(test_data, "test data"), s.ctx))
    if passes is not None:
        s.check(lib.ulc_request_set_passes(rq, passes.encode(), s.ctx))
    return rq


# ---- the three calls ----------------------------------------------------------------------------

def forget(model, spec=None, output=None, *, data=None, classes=None, rows=None, test_data=None,
           passes=None, seed=None, threads=None, allow_external_outside=False):
    """Makes the model at ``model`` forget what a request names; returns the report as a dict.

    The request is a forget spec (``spec``: a JSON file, docs/spec.md), or built from arguments:
    ``data`` (training data, safetensors) with ``classes`` (labels) or ``rows`` (row indices),
    optionally ``test_data``, and ``passes`` (the unlearning passes as text, e.g.
    ``"delete{epochs=20}"``; RFA's defaults otherwise). ``seed`` replaces the request's seed,
    ``threads`` its thread count (None: as many as the load leaves). When ``output`` is given
    the unlearned model is written there, in the format its name asks for. The report is the
    document ``ulc MODEL --forget SPEC --report r.json`` writes; its "output" is null (the
    library reports the model in memory). ulc_model_load + ulc_request_from_spec (or
    ulc_request_create ...) + ulc_forget + ulc_model_save.
    """
    if spec is not None:
        given = [k for k, v in (("data", data), ("classes", classes), ("rows", rows),
                                ("test_data", test_data), ("passes", passes)) if v is not None]
        if given:
            raise InvalidArgumentError(Status.INVALID_ARG, "forget: a spec names its data, forget "
                                       f"set and method: {', '.join(given)} not allowed with one")
    elif data is None or (classes is None) == (rows is None):
        raise InvalidArgumentError(Status.INVALID_ARG, "forget: give a spec, or data= and one of "
                                   "classes= or rows=")
    with _Session(allow_external_outside) as s:
        m = s.load(model)
        rq = _request(s, spec, data, classes, rows, test_data, passes)
        if seed is not None:
            s.lib.ulc_request_set_seed(rq, int(seed))
        if threads is not None:
            s.lib.ulc_request_set_threads(rq, int(threads))
        res = _P(_Result)()
        s.check(s.lib.ulc_forget(m, rq, ctypes.byref(res), s.ctx))
        s.own(res, s.lib.ulc_result_free)
        report = json.loads(s.lib.ulc_result_report(res).decode())
        if output is not None:
            s.check(s.lib.ulc_model_save(m, _path(output, "output"), s.ctx))
        return report


def merge(base, adapters, output, *, weights=None, unmerge=False, untie_embeddings=False,
          in_place=False, threads=None):
    """Bakes PEFT LoRA adapters into the weights of ``base`` and writes ``output`` in its format.

    ``adapters``: an adapter directory or a list of them, merged in order; ``weights``: one
    number per adapter (default 1 each). ``unmerge`` subtracts them instead,
    ``untie_embeddings`` lets an adapter change one side of tied embeddings, ``in_place``
    allows ``output`` to be ``base``. ``ulc merge BASE --lora A[:W] ... -o OUT`` (ulc_merge).
    """
    if isinstance(adapters, (str, bytes, os.PathLike)):
        adapters = [adapters]
    paths = [_path(a, "adapter") for a in adapters]
    if not paths:
        raise InvalidArgumentError(Status.INVALID_ARG, "merge: no adapter given")
    w = None
    if weights is not None:
        if isinstance(weights, (int, float)):
            weights = [weights]
        weights = [float(x) for x in weights]
        if len(weights) != len(paths):
            raise InvalidArgumentError(Status.INVALID_ARG, f"merge: {len(paths)} adapters but "
                                       f"{len(weights)} weights")
        if not all(math.isfinite(x) for x in weights):
            raise InvalidArgumentError(Status.INVALID_ARG, f"merge: weights {weights}")
        w = (ctypes.c_double * len(weights))(*weights)
    flags = ((_MERGE_UNMERGE if unmerge else 0) | (_MERGE_UNTIE if untie_embeddings else 0) |
             (_MERGE_IN_PLACE if in_place else 0))
    arr = (_c_str * len(paths))(*paths)
    with _Session() as s:
        s.check(s.lib.ulc_merge(_path(base, "base model"), arr, w, len(paths),
                                _path(output, "output"), flags, int(threads or 0), s.ctx))


def convert(input, output, *, passes=None, allow_external_outside=False):
    """Reads the model at ``input`` and writes it to ``output`` in the format its name asks for
    (.onnx, .safetensors, or a directory), after the graph passes ``passes`` when given
    (``"specialize{batch=1},cleanup"``, docs/cli.md). ``ulc convert IN -o OUT --passes P``
    (ulc_model_load + ulc_model_apply + ulc_model_save); the CLI's --external-data and
    --emit-adapter are the command's only.
    """
    with _Session(allow_external_outside) as s:
        m = s.load(input)
        if passes is not None:
            s.check(s.lib.ulc_model_apply(m, passes.encode(), s.ctx))
        s.check(s.lib.ulc_model_save(m, _path(output, "output"), s.ctx))

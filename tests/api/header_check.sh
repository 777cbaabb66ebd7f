#!/usr/bin/env bash
# include/ulc.h on its own: a C11 translation unit with strict warnings, and C++ when a C++
# compiler is present (extern "C", no C-only constructs).
# Usage: header_check.sh INCLUDE_DIR CC [CXX]
set -euo pipefail
inc=$1 cc=$2 cxx=${3:-}
tu='#include "ulc.h"
int main(void) { ulc_ctx *c = 0; return ulc_ctx_create(&c) == ULC_OK ? 0 : 1; }'
printf '%s\n' "$tu" | "$cc" -std=c11 -Wall -Wextra -Werror -pedantic -Wstrict-prototypes \
  -Wmissing-prototypes -Wundef -I"$inc" -x c -fsyntax-only -
echo "header_check: C11 ok ($cc)"
if [ -z "$cxx" ]; then cxx=$(command -v g++ || command -v c++ || true); fi
if [ -n "$cxx" ]; then
  for std in c++11 c++17; do
    printf '%s\n' "$tu" | "$cxx" -std=$std -Wall -Wextra -Werror -pedantic -Wundef -I"$inc" \
      -x c++ -fsyntax-only -
  done
  echo "header_check: C++ ok ($cxx)"
else
  echo "header_check: no C++ compiler: C++ not checked"
fi

#!/usr/bin/env bash
# Enforces the module rules of docs/ARCHITECTURE.md on the sources:
#   - which layer may include which (common <- ir <- {import, export, runtime}; io <- import +
#     export; passes and train <- ir + runtime's public header; methods <- train + passes;
#     eval <- io + train; text (tokenizers) <- common only, and io, eval, jobs, api may include it; jobs <- every library room but tools (and include/ulc.h); api (the public
#     C API) may include anything but tools/; tools <- jobs, io, common and the two public headers
#     a command line fills options of (passes/pass.h, runtime/runtime.h); tests and bench may
#     include anything);
#   - inside runtime/: the backend-independent files (runtime/*.c, runtime/*.h) never include a
#     backend's headers (runtime/cpu/, runtime/cuda/: they reach a backend through its vtable),
#     and a backend never includes the planner's internals (runtime/plan.h) nor another backend;
#   - oneDNN headers only under runtime/cpu/, CUDA headers only under runtime/cuda/;
#   - no exit()/abort() in library code (only tools/ exits; ULC_ASSERT's abort lives in common/status.c).
#   - the C API (api/) never prints or installs signal handlers.
set -u
root=${1:-$(dirname "$0")/..}
cd "$root" || exit 2
fail=0

allowed() { # layer -> allowed include prefixes
  case "$1" in
    common)  echo "common include/ulc.h" ;;
    ir)      echo "common ir" ;;
    import)  echo "common ir import" ;;
    export)  echo "common ir export" ;;
    runtime) echo "common ir runtime" ;;
    passes)  echo "common ir passes runtime/runtime.h" ;;
    train)   echo "common ir train runtime/runtime.h" ;;
    methods) echo "common ir methods train passes runtime/runtime.h io/cache.h" ;;
    text)    echo "common text" ;;
    io)      echo "common ir io import export text" ;;
    eval)    echo "common ir eval io train runtime/runtime.h text" ;;
    jobs)    echo "common ir import export runtime passes train methods io eval jobs text include/ulc.h" ;;
    api)     echo "include/ulc.h common ir import export runtime passes train methods io eval jobs text" ;;
    tools)   echo "tools jobs io common passes/pass.h runtime/runtime.h" ;;
    *)       echo "*" ;;
  esac
}

src_dirs="common text ir import export runtime passes train methods io eval jobs api tools tests bench"
existing=$(for d in $src_dirs; do [ -d "$d" ] && echo "$d"; done)

for layer in common text ir import export runtime passes train methods io eval jobs api tools; do
  [ -d "$layer" ] || continue
  ok=$(allowed "$layer")
  while IFS= read -r line; do
    file=${line%%:*}
    inc=$(printf '%s' "$line" | sed -n 's/.*#include "\([^"]*\)".*/\1/p')
    [ -n "$inc" ] || continue
    case "$inc" in */*) ;; *) continue ;; esac   # same-directory or generated headers
    good=0
    for p in $ok; do
      case "$inc" in "$p"|"$p"/*) good=1 ;; esac
    done
    if [ $good -eq 0 ]; then
      echo "layering: $file includes \"$inc\", but $layer/ may only include: $ok"
      fail=1
    fi
  done < <(grep -rn --include='*.c' --include='*.h' '#include "' "$layer" | sed 's/:[0-9]*:/:/')
done

if [ -d runtime ]; then
  while IFS= read -r line; do
    file=${line%%:*}
    inc=$(printf '%s' "$line" | sed -n 's/.*#include "\([^"]*\)".*/\1/p')
    case "$file" in
      runtime/cpu/*|runtime/cuda/*)
        be=${file#runtime/}; be=${be%%/*}
        case "$inc" in
          runtime/plan.h) echo "layering: $file includes \"$inc\": backends see the planner only through kernel.h"; fail=1 ;;
          runtime/cpu/*|runtime/cuda/*)
            case "$inc" in runtime/"$be"/*) ;; *) echo "layering: $file includes \"$inc\", another backend's header"; fail=1 ;; esac ;;
        esac ;;
      *)
        case "$inc" in runtime/cpu/*|runtime/cuda/*)
          echo "layering: $file includes \"$inc\": backend-independent runtime files reach a backend through its vtable"; fail=1 ;;
        esac ;;
    esac
  done < <(grep -rn --include='*.c' --include='*.h' '#include "' runtime | sed 's/:[0-9]*:/:/')
fi

while IFS= read -r hit; do
  case "$hit" in runtime/cpu/*) ;; *) echo "layering: oneDNN outside runtime/cpu/: $hit"; fail=1 ;; esac
done < <(grep -rn --include='*.c' --include='*.h' -E '#include *[<"](dnnl|oneapi/dnnl)' $existing 2>/dev/null)
while IFS= read -r hit; do
  case "$hit" in runtime/cuda/*) ;; *) echo "layering: CUDA outside runtime/cuda/: $hit"; fail=1 ;; esac
done < <(grep -rn --include='*.c' --include='*.h' --include='*.cu' -E '#include *[<"](cuda|cublas|cudnn)' $existing 2>/dev/null)

for layer in common text ir import export runtime passes train methods io eval jobs api; do
  [ -d "$layer" ] || continue
  while IFS= read -r hit; do
    case "$hit" in common/status.c:*abort*) continue ;; esac
    echo "layering: library code must not exit: $hit"; fail=1
  done < <(grep -rn --include='*.c' -E '\b(exit|_exit|abort)\s*\(' "$layer")
done

# The public C API runs inside other programs: it never prints or installs signal handlers.
if [ -d api ]; then
  while IFS= read -r hit; do
    echo "layering: the C API must not print or handle signals: $hit"; fail=1
  done < <(grep -rn --include='*.c' -E '\b(printf|fprintf|puts|fputs|perror|signal|sigaction)\s*\(' api)
fi

if [ $fail -eq 0 ]; then echo "layering: ok"; fi
exit $fail

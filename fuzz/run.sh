#!/usr/bin/env bash
# Runs one libFuzzer harness for a set time (docs/fuzzing.md):
#   run.sh BINARY NAME SECONDS WORKDIR FUZZDIR
# FUZZ_SECONDS in the environment overrides SECONDS. The seeds (FUZZDIR/corpus/NAME) are read,
# never written: new inputs go to WORKDIR/corpus/NAME, which persists between runs, crash inputs
# to WORKDIR/crashes/NAME/, the log to WORKDIR/logs/NAME.log. Exit status: 0 when the harness ran
# the whole time without a finding; otherwise non-zero, after naming the input that failed and
# the command that replays it.
set -u
bin=$1 name=$2 seconds=${FUZZ_SECONDS:-$3} work=$4 fuzzdir=$5
corpus=$work/corpus/$name crashes=$work/crashes/$name log=$work/logs/$name.log
mkdir -p "$corpus" "$crashes" "$work/logs"
args=(-max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1
      -artifact_prefix="$crashes/")
[ -f "$fuzzdir/dict/$name.dict" ] && args+=(-dict="$fuzzdir/dict/$name.dict")
# One thread for the CPU runtime's constant folding: fuzzing shares the machine.
export OMP_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
before=$(ls "$crashes" | wc -l)
"$bin" "${args[@]}" "$corpus" "$fuzzdir/corpus/$name" > "$log" 2>&1
rc=$?
# The stats the report (docs/fuzzing.md) quotes: the last status line and the final counters.
grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$log" | tail -n 1
grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log"
echo "fuzz_$name: ${seconds}s, corpus $(ls "$corpus" | wc -l) files in $corpus, log $log"
if [ $rc -ne 0 ] || [ "$(ls "$crashes" | wc -l)" -ne "$before" ]; then
  tail -n 60 "$log"
  echo "fuzz_$name: FINDING (exit $rc). Inputs that failed, in $crashes:"
  ls -t "$crashes" | sed "s|^|  $crashes/|"
  echo "replay: $bin <input>   (ASan/UBSan report as above)"
  exit 1
fi

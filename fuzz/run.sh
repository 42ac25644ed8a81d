#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 60) each, on the corpus kept in
# fuzz/corpus/TARGET/ (new inputs libFuzzer finds are added there), and prints the executions
# per target and any crash. Exits non-zero when a target crashed.
#
#   fuzz/run.sh                 # every target, 60 s each
#   FUZZ_SECONDS=30 fuzz/run.sh sniff path
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). The toolchain is stable, so RUSTC_BOOTSTRAP=1
# lets cargo-fuzz pass its unstable flags. FUZZ_SANITIZER (default `none`: coverage only, no
# AddressSanitizer; the code is safe Rust, and ASan builds are slow on small machines) is
# passed as `-s`; FUZZ_JOBS sets the build's jobs.
set -u
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
seconds="${FUZZ_SECONDS:-60}"
sanitizer="${FUZZ_SANITIZER:-none}"
jobs="${FUZZ_JOBS:-2}"
max_len="${FUZZ_MAX_LEN:-8192}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 2
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi
echo "building ${#targets[@]} targets (sanitizer: $sanitizer)"
# One build of every target (`cargo fuzz build` builds one target or all of them).
if ! CARGO_BUILD_JOBS="$jobs" cargo fuzz build --fuzz-dir fuzz -a -s "$sanitizer" >fuzz/build.log 2>&1; then
    tail -30 fuzz/build.log
    exit 2
fi
mkdir -p fuzz/logs
status=0
summary=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    log="fuzz/logs/$t.log"
    cargo fuzz run --fuzz-dir fuzz -a -s "$sanitizer" "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
    crashes=$(ls "fuzz/artifacts/$t" 2>/dev/null | grep -E '^(crash|timeout|oom|leak)-' | tr '\n' ' ')
    if [ $rc -ne 0 ] || [ -n "$crashes" ]; then
        status=1
        line="$t: CRASH (exit $rc) executions=${execs:-?} ${crashes}"
        grep -m1 -A12 -E "panicked|ERROR: libFuzzer|SUMMARY" "$log" | sed 's/^/    /'
    else
        line="$t: ok executions=${execs:-?} coverage=${cov:-?} corpus=$(ls "fuzz/corpus/$t" | wc -l)"
    fi
    echo "$line"
    summary+=("$line")
done
echo
echo "== ${seconds}s per target"
printf '%s\n' "${summary[@]}"
exit $status

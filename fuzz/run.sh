#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for SECONDS each, one after the other,
# and prints one line per target: its exec count and whether it crashed.
#
#   fuzz/run.sh SECONDS [TARGET...]
#
# Exits non-zero if any target crashed (its input is in fuzz/artifacts/TARGET/,
# its log in fuzz/work/logs/TARGET.log). New inputs libFuzzer finds go to
# fuzz/work/corpus/TARGET/ (not committed); the committed seeds in
# fuzz/corpus/TARGET/ are only read.
#
# Environment:
#   FUZZ_SANITIZER  cargo-fuzz sanitizer (default: none; "address" for ASan;
#                   the ringcast crates forbid unsafe code, so panics are what
#                   the targets look for and the default runs ~2x faster)
#   FUZZ_ARGS       extra libFuzzer arguments (e.g. "-jobs=2 -workers=2")
set -uo pipefail

usage() {
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
}
[[ $# -ge 1 && $1 =~ ^[0-9]+$ && $1 -gt 0 ]] || usage
seconds=$1
shift

fuzz_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$fuzz_dir")
cd "$root" || exit 1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz ..." >&2
    cargo install cargo-fuzz --locked || exit 1
fi

# cargo-fuzz needs nightly flags: the nightly toolchain if there is one,
# else the installed toolchain with RUSTC_BOOTSTRAP=1.
toolchain=()
if command -v rustup >/dev/null 2>&1 && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
fi
sanitizer=${FUZZ_SANITIZER:-none}
# Release build with debug assertions and overflow checks.
flags=(--fuzz-dir "$fuzz_dir" --sanitizer "$sanitizer" --debug-assertions)

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list --fuzz-dir "$fuzz_dir")
fi
[[ ${#targets[@]} -gt 0 ]] || { echo "no fuzz targets found" >&2; exit 1; }

echo "building ${#targets[@]} target(s) (sanitizer: $sanitizer) ..." >&2
mkdir -p "$fuzz_dir/work/logs"
build_log="$fuzz_dir/work/logs/build.log"
# `cargo fuzz build` builds one target or all of them.
one=()
[[ ${#targets[@]} -eq 1 ]] && one=("${targets[0]}")
if ! cargo "${toolchain[@]}" fuzz build "${flags[@]}" "${one[@]}" >"$build_log" 2>&1; then
    tail -n 40 "$build_log" >&2
    exit 1
fi

# The cluster_config target writes its files under the temporary folder.
export TMPDIR="$fuzz_dir/work/tmp.$$"
mkdir -p "$TMPDIR"
failed=0
for target in "${targets[@]}"; do
    work="$fuzz_dir/work/corpus/$target"
    seeds="$fuzz_dir/corpus/$target"
    log="$fuzz_dir/work/logs/$target.log"
    mkdir -p "$work" "$seeds"
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of arguments
    cargo "${toolchain[@]}" fuzz run "${flags[@]}" "$target" "$work" "$seeds" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=60 -rss_limit_mb=4096 \
        ${FUZZ_ARGS:-} >"$log" 2>&1
    status=$?
    # The exec count: libFuzzer's final stats, else its last "#N" status line.
    execs=$(grep -aE '^stat::number_of_executed_(units|runs):' "$log" | tail -n 1 | awk '{print $2}')
    if [[ -z $execs ]]; then
        execs=$(grep -aoE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
    fi
    done_line=$(grep -aE '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)
    if [[ $status -ne 0 ]] || grep -aqE 'panicked at|deadly signal|ERROR: libFuzzer|SUMMARY: (libFuzzer|AddressSanitizer)' "$log"; then
        failed=1
        artifact=$(grep -aoE 'Test unit written to [^ ]+' "$log" | tail -n 1 | sed 's/Test unit written to //')
        printf '%-16s execs=%-10s CRASHED  artifact=%s  log=%s\n' "$target" "${execs:-?}" "${artifact:-none}" "$log"
        grep -aE -m 3 -A 3 'panicked at' "$log" | sed 's/^/    /' | head -n 12
    else
        printf '%-16s execs=%-10s ok%s\n' "$target" "${execs:-?}" "${done_line:+  ($done_line)}"
    fi
done
rm -rf "$TMPDIR"
exit "$failed"

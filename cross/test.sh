#!/usr/bin/env bash
# Run the whole test suite for a cross target under qemu-user.
#
#   cross/test.sh TARGET [extra cargo test args...]     e.g. cross/test.sh aarch64 -- --test-threads=2
#
# Same installs as cross/build.sh, then `cargo test --target <triple>`: cargo executes each
# test binary through the `runner` of .cargo/config.toml (qemu-*-static). Debug profile, as
# a plain `cargo test`. Emulation is 5-20x slower than native: the tests see
# CLOUD_NOTIFY_TEST_RUNNER and wait six times longer for each event (tests/host/patience.rs);
# compare with a native `cargo test` before chasing a failure seen here only.
# Builds in target/cross/ (own target dir: see cross/common.sh).
# On a shared 2-core machine: nice -n 19 env CARGO_BUILD_JOBS=1 cross/test.sh aarch64
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ ${1:-} == -h || ${1:-} == --help ]] && { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; usage_targets; exit 0; }
resolve_target "${1:-}"
shift
ensure_all

say "testing on $TRIPLE under $QEMU$( ((USE_ZIG)) && echo ' (linked by cargo-zigbuild)')"
start=$SECONDS
rc=0
# Tests that start the cloud-notify binary themselves (tests/cli.rs) start it through
# qemu too: without binfmt_misc the kernel cannot run a foreign binary.
runner=$QEMU
[[ $RUST_TRIPLE == *-gnu* ]] && runner="$QEMU -L /usr/${BINUTILS%-}"
export CLOUD_NOTIFY_TEST_RUNNER=$runner
(cd "$ROOT" && cargo_for test "$@") || rc=$?
say "cargo test for $TRIPLE: exit $rc after $((SECONDS - start))s"
exit "$rc"

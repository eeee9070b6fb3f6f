#!/usr/bin/env bash
# Cross-build the release binary of cloud-notify for a Raspberry Pi class board.
#
#   cross/build.sh TARGET [extra cargo args...]
#
# TARGET: aarch64 | armv7 | aarch64-musl | a full triple (see cross/common.sh).
# Installs what is missing (Debian cross gcc + qemu-user-static, the rustup target, and for
# musl/zig targets a venv with ziglang + cargo-zigbuild under ~/.cache/cloud-notify-zig),
# builds with the size-tuned release profile, and prints the binary's path and sizes.
# Until cross/profile.toml is pasted into Cargo.toml it is applied with `--config`; once
# Cargo.toml has a [profile.release], that one is used as is.
# Output goes to target/cross/<triple>/release/ (own target dir: see cross/common.sh).
# On a shared 2-core machine: nice -n 19 env CARGO_BUILD_JOBS=1 cross/build.sh aarch64
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ ${1:-} == -h || ${1:-} == --help ]] && { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; usage_targets; exit 0; }
resolve_target "${1:-}"
shift
ensure_all

profile_args=()
if ! grep -q '^\[profile\.release\]' "$ROOT/Cargo.toml"; then
    profile_args=(--config "$CROSS_DIR/profile.toml")
fi

say "building cloud-notify (release) for $TRIPLE$( ((USE_ZIG)) && echo ' with cargo-zigbuild')"
start=$SECONDS
json=$(mktemp)
trap 'rm -f "$json"' EXIT
(
    cd "$ROOT"
    cargo_for build --release --bin cloud-notify "${profile_args[@]}" \
        --message-format=json-render-diagnostics "$@" >"$json"
) || die "cargo build for $TRIPLE failed"
elapsed=$((SECONDS - start))

bin=$(python3 -c '
import json, sys
exe = None
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "cloud-notify":
        exe = m["executable"]
print(exe or "")' "$json")
[[ -n $bin && -f $bin ]] || die "build succeeded but no cloud-notify executable was reported"

size=$(stat -c %s "$bin")
tmp=$(mktemp)
"${BINUTILS}strip" -o "$tmp" "$bin"
stripped=$(stat -c %s "$tmp")
rm -f "$tmp"

glibc=$("${BINUTILS}objdump" -T "$bin" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1 || true)
# Captured first: `readelf | grep -q` under pipefail fails when grep stops reading early.
headers=$("${BINUTILS}readelf" -l "$bin")
if grep -q INTERP <<<"$headers"; then linkage=dynamic; else linkage=static; fi

echo "$bin"
printf 'target:   %s\n' "$TRIPLE"
printf 'size:     %s bytes (stripped: %s bytes, %.2f MiB)\n' "$size" "$stripped" "$(awk -v b="$stripped" 'BEGIN { print b / 1048576 }')"
printf 'linkage:  %s\n' "${linkage}${glibc:+, needs glibc >= ${glibc#GLIBC_}}"
printf 'time:     %ss\n' "$elapsed"
printf 'try it:   %s%s %s check   (writes ./data: run it in a scratch dir)\n' \
    "$QEMU" "$( [[ $USE_ZIG == 0 ]] && echo " -L /usr/${BINUTILS%-}")" "$bin"

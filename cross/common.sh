# shellcheck shell=bash
# Shared by cross/build.sh and cross/test.sh: resolve the target, install what it needs.
# Sourced, not run. Everything it installs is checked first, so a second run is silent.
#
# Targets:
#   aarch64       aarch64-unknown-linux-gnu       Debian gcc cross + qemu (Pi 3/4/5, 64-bit OS)
#   armv7         armv7-unknown-linux-gnueabihf   Debian gcc cross + qemu (Pi 2/3/4, 32-bit OS)
#   aarch64-musl  aarch64-unknown-linux-musl      cargo-zigbuild, static binary
#   a full triple: the two gnu triples above use gcc; any *-musl* triple, or a gnu triple
#   with a glibc version suffix (e.g. armv7-unknown-linux-gnueabihf.2.31, to run on an
#   older glibc), uses cargo-zigbuild.

CROSS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$CROSS_DIR/.." && pwd)
ZIG_VENV=${CLOUD_NOTIFY_ZIG_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/cloud-notify-zig}
# Pinned: the versions this was tried with.
ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1

# Cross builds get their own target dir. In the shared one, cargo puts the build scripts and
# proc macros of a `--target` build in the host's target/release (or target/debug) and holds
# that directory's lock for the whole build, so a cross build and a host `cargo build
# --release` / `cargo bench` wait for each other ("Blocking waiting for file lock on
# artifact directory", seen here). CARGO_TARGET_DIR, if set, wins.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/cross}

APT_BASE=(qemu-user-static)
APT_AARCH64=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
APT_ARMV7=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)

say() { printf 'cross: %s\n' "$*" >&2; }
die() { printf 'cross: error: %s\n' "$*" >&2; exit 1; }

usage_targets() {
    cat >&2 <<'EOF'
TARGET is one of:
  aarch64        aarch64-unknown-linux-gnu
  armv7          armv7-unknown-linux-gnueabihf
  aarch64-musl   aarch64-unknown-linux-musl (via cargo-zigbuild)
or a full triple (*-musl*, or a gnu triple with a glibc suffix such as .2.31, use zigbuild).
EOF
}

# Sets TRIPLE (as given to cargo, may carry a .2.31 glibc suffix), RUST_TRIPLE (without
# it), USE_ZIG (0/1), ARCH (aarch64|arm), BINUTILS (prefix of objdump/strip), QEMU.
# shellcheck disable=SC2034  # the variables set here are used by build.sh/test.sh
resolve_target() {
    local t=${1:-}
    [[ -n $t ]] || { usage_targets; die "no TARGET given"; }
    case $t in
        aarch64) t=aarch64-unknown-linux-gnu ;;
        armv7 | armhf) t=armv7-unknown-linux-gnueabihf ;;
        aarch64-musl) t=aarch64-unknown-linux-musl ;;
    esac
    TRIPLE=$t
    RUST_TRIPLE=$t
    USE_ZIG=0
    if [[ $t =~ ^(.+-gnu[a-z]*)\.([0-9]+\.[0-9]+)$ ]]; then
        RUST_TRIPLE=${BASH_REMATCH[1]}
        USE_ZIG=1
    elif [[ $t == *-musl* ]]; then
        USE_ZIG=1
    elif [[ $t != aarch64-unknown-linux-gnu && $t != armv7-unknown-linux-gnueabihf ]]; then
        usage_targets
        die "unsupported target '$1' (no gcc cross compiler is set up for it here)"
    fi
    case $RUST_TRIPLE in
        aarch64-*) ARCH=aarch64 BINUTILS=aarch64-linux-gnu- QEMU=qemu-aarch64-static ;;
        armv7-* | arm-*) ARCH=arm BINUTILS=arm-linux-gnueabihf- QEMU=qemu-arm-static ;;
        *) die "unsupported architecture in '$RUST_TRIPLE' (aarch64 and armv7 only)" ;;
    esac
}

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root to run: $*"
    fi
}

ensure_apt() {
    local want=("${APT_BASE[@]}") missing=() p
    # binutils for objdump/strip come with the gcc cross package; the musl route links with
    # zig but still uses them to strip and inspect the binary, and qemu to run it.
    if [[ $ARCH == aarch64 ]]; then want+=("${APT_AARCH64[@]}"); else want+=("${APT_ARMV7[@]}"); fi
    for p in "${want[@]}"; do
        [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == *'install ok installed'* ]] || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get: install them by hand"
    say "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        || die "apt-get update failed"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
}

ensure_rust_target() {
    command -v rustup >/dev/null || die "rustup not found: the $RUST_TRIPLE standard library cannot be installed"
    # Run from ROOT so a rust-toolchain file there, if any, picks the toolchain.
    local installed
    installed=$(cd "$ROOT" && rustup target list --installed)
    if ! grep -qx "$RUST_TRIPLE" <<<"$installed"; then
        say "adding rust target $RUST_TRIPLE"
        (cd "$ROOT" && rustup target add "$RUST_TRIPLE") || die "rustup target add $RUST_TRIPLE failed"
    fi
}

ensure_zig() {
    local py=$ZIG_VENV/bin/python
    if [[ -x $ZIG_VENV/bin/cargo-zigbuild ]] && "$py" -c 'import ziglang' 2>/dev/null; then
        :
    else
        command -v python3 >/dev/null || die "python3 is needed for the zig toolchain (PyPI ziglang)"
        say "creating $ZIG_VENV with ziglang==$ZIGLANG_VERSION cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
        python3 -m venv "$ZIG_VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
        "$ZIG_VENV/bin/pip" install -q --disable-pip-version-check \
            "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION" \
            || die "pip install of ziglang/cargo-zigbuild failed"
    fi
    # cargo-zigbuild finds zig through `python3 -m ziglang` when no `zig` is on PATH.
    export PATH="$ZIG_VENV/bin:$PATH"
}

ensure_all() {
    ensure_apt
    ensure_rust_target
    if ((USE_ZIG)); then ensure_zig; fi
    command -v "$QEMU" >/dev/null || die "$QEMU not found after install"
}

# `cargo` or `cargo-zigbuild` with the subcommand: cargo_for build|test ...
cargo_for() {
    local sub=$1
    shift
    if ((USE_ZIG)); then
        local zsub=$sub
        [[ $sub == build ]] && zsub=zigbuild
        cargo-zigbuild "$zsub" --target "$TRIPLE" "$@"
    else
        cargo "$sub" --target "$TRIPLE" "$@"
    fi
}

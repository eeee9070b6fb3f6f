#!/usr/bin/env bash
# Boots an emulated Raspberry Pi 4-sized ARM board (4 cores, 1 GB) with the release
# cloud-notify in it, and runs the load benchmark's clients on this host against it.
#
#   cross/vm.sh aarch64|armv7 [command...]
#
# Without a command it runs `cargo bench --bench load` against the VM, at 1,000 users,
# hibernated mode (set LOAD_ARGS to pass others, e.g. LOAD_ARGS="--sizes 1000,10000").
# With a command, it runs that instead, with these in its environment:
#   CLOUD_NOTIFY_VM_CTL   the control command (see below), e.g. "$CLOUD_NOTIFY_VM_CTL info"
#   CLOUD_NOTIFY_VM_C2S   host:port forwarded to the server's client port
#   CLOUD_NOTIFY_VM_COMPONENT  host:port forwarded to its component port
# `cross/vm.sh aarch64 bash` gives a shell with the VM up.
#
# What it does, reusing what an earlier run left in target/vm/ARCH:
#  - installs what is missing with apt (qemu-system-arm, fakeroot, cpio, curl and
#    cross/build.sh's cross compilers);
#  - builds the release binary with cross/build.sh (CLOUD_NOTIFY_VM_BINARY=PATH skips it);
#  - downloads from Debian, into a private apt state (the host's apt is untouched), the
#    kernel (linux-image-arm64 / linux-image-armmp-lpae), busybox-static, libc6 and
#    libgcc-s1 of the target, and makes of them a root filesystem held in RAM (an
#    initramfs on ramfs: memory readings are the guest kernel's own, and the binary's
#    pages count as file pages, as on a board's ext4);
#  - boots qemu-system (TCG) with user-mode networking, restricted (the guest reaches
#    nothing), the server's ports and a control port forwarded to 127.0.0.1;
#  - waits for the guest's control agent (a busybox httpd CGI) with a deadline, runs the
#    command, and stops the VM on exit, whatever happened.
#
# The control command is `target/vm/ARCH/ctl VERB`: info | setup (config on stdin) |
# import (accounts on stdin) | start | memory | cpu | stop. The load benchmark drives the
# server through it with --server-ctl (README, "Performance").
# Timings under emulation are not meaningful; memory is. The serial console goes to
# target/vm/ARCH/console.log. Takes root for apt (sudo when not root).
set -euo pipefail

CROSS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$CROSS_DIR/.." && pwd)

usage() { sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; }
say() { printf 'vm: %s\n' "$*" >&2; }
die() { printf 'vm: error: %s\n' "$*" >&2; exit 1; }

case ${1:-} in
    -h | --help) usage; exit 0 ;;
    aarch64 | arm64) ARCH=aarch64 ;;
    armv7 | armhf) ARCH=armv7 ;;
    *) usage >&2; exit 2 ;;
esac
shift

if [[ $ARCH == aarch64 ]]; then
    DEBARCH=arm64 TRIPLE=aarch64-unknown-linux-gnu GNU=aarch64-linux-gnu
    KERNEL_META=linux-image-arm64 LOADER=ld-linux-aarch64.so.1
    QEMU=(qemu-system-aarch64 -M virt -cpu cortex-a72)
    # Debian builds these as modules, and ships no modules.dep here: loaded in this order.
    MODULES=(drivers/virtio/virtio_mmio net/core/failover drivers/net/net_failover drivers/net/virtio_net)
else
    DEBARCH=armhf TRIPLE=armv7-unknown-linux-gnueabihf GNU=arm-linux-gnueabihf
    KERNEL_META=linux-image-armmp-lpae LOADER=ld-linux-armhf.so.3
    # highmem=off: the armmp-lpae kernel does not find the virt board's devices above 4 GB.
    # shellcheck disable=SC2054  # the comma is qemu's, inside one word
    QEMU=(qemu-system-arm -M virt,highmem=off -cpu cortex-a15)
    MODULES=(drivers/virtio/virtio_mmio net/core/failover drivers/net/net_failover drivers/net/virtio_net)
fi
VM_DIR=${CLOUD_NOTIFY_VM_DIR:-$ROOT/target/vm}/$ARCH
BOOT_DEADLINE_S=${CLOUD_NOTIFY_VM_BOOT_DEADLINE:-300}
mkdir -p "$VM_DIR"

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root to run: $*"; fi
}

ensure_apt() {
    local want=(qemu-system-arm fakeroot cpio curl python3) missing=() p
    for p in "${want[@]}"; do
        [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == *'install ok installed'* ]] || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    say "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
}

# apt for the target architecture in a state of its own under VM_DIR: adding a foreign
# architecture to the host's apt makes its `apt-get update` fail whenever one of that
# architecture's indexes does (seen with armhf).
# target_apt apt-get|apt-cache ARGS...
target_apt() {
    local a=$VM_DIR/apt tool=$1
    shift
    "$tool" -q -o Dir::State="$a/state" -o Dir::State::status="$a/status" \
        -o Dir::Cache="$a/cache" -o APT::Architecture="$DEBARCH" \
        -o APT::Architectures::="$DEBARCH" -o APT::Sandbox::User=root \
        -o Debug::NoLocking=1 "$@"
}

# The Debian packages, unpacked into VM_DIR/debs/NAME. Reused while they are there.
fetch_packages() {
    [[ -f $VM_DIR/debs/.done ]] && return 0
    say "downloading the $DEBARCH kernel, busybox-static, libc6 and libgcc-s1 from Debian"
    rm -rf "$VM_DIR/apt" "$VM_DIR/debs"
    mkdir -p "$VM_DIR/apt/state/lists/partial" "$VM_DIR/apt/cache/archives/partial" "$VM_DIR/debs"
    touch "$VM_DIR/apt/status"
    # An index that fails to download (armhf's security one does, now and then: "File has
    # unexpected size") leaves the others usable; what is missing shows below.
    target_apt apt-get update >/dev/null || say "warning: apt-get update for $DEBARCH had errors; going on with the indexes it got"
    # The metapackage names the current kernel package; the image is in that one.
    local kernel
    kernel=$(target_apt apt-cache depends "$KERNEL_META" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    [[ -n $kernel ]] || die "no kernel package behind $KERNEL_META"
    kernel=${kernel%%:*}
    local p
    for p in busybox-static libc6 libgcc-s1 "$kernel"; do
        (cd "$VM_DIR/debs" && target_apt apt-get download "$p:$DEBARCH" >/dev/null) || die "apt-get download $p failed"
    done
    for deb in "$VM_DIR"/debs/*.deb; do
        p=$(basename "$deb")
        p=${p%%_*}
        dpkg-deb -x "$deb" "$VM_DIR/debs/$p"
    done
    echo "$kernel" >"$VM_DIR/debs/kernel-package"
    rm -f "$VM_DIR"/debs/*.deb
    touch "$VM_DIR/debs/.done"
}

# The guest's /init and its control agent.
write_init() {
    local rootfs=$1
    cat >"$rootfs/init" <<'EOF'
#!/bin/busybox sh
# PID 1 of the guest: mounts, network, the control agent; then waits to be switched off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
# The server's data: tmpfs, as the board's SD card would be too slow to be what is measured.
mount -t tmpfs -o size=512m srv /srv
for m in $(cat /etc/modules-order); do insmod "/lib/modules/$m.ko" || echo "vm-init: insmod $m failed"; done
ip link set lo up
ip link set eth0 up || { echo "cloud-notify-vm: failed: no network device"; exit 1; }
# qemu's user network: the guest is 10.0.2.15, reachable only through the forwards.
ip addr add 10.0.2.15/24 dev eth0
ulimit -n 65536
cd /www && httpd -p 8080 -h /www
echo "cloud-notify-vm: ready $(uname -m) $(nproc) cores"
while :; do sleep 3600; done
EOF
    chmod 755 "$rootfs/init"
    mkdir -p "$rootfs/www/cgi-bin"
    cat >"$rootfs/www/cgi-bin/ctl" <<'EOF'
#!/bin/sh
# The control agent: /cgi-bin/ctl?VERB, a request body as the verb's input. The last
# line of every answer is `exit=N`, as httpd passes no exit status.
export PATH=/bin
printf 'Content-Type: text/plain\r\n\r\n'
S=/srv
B=/usr/bin/cloud-notify
pid() { cat $S/pid 2>/dev/null; }
body() { head -c "${CONTENT_LENGTH:-0}"; }
run() {
case $QUERY_STRING in
info)
    echo "arch=$(uname -m)"
    echo "kernel=$(uname -r)"
    echo "cores=$(nproc)"
    echo "memory_kb=$(awk '/MemTotal/ { print $2 }' /proc/meminfo)"
    echo "cpu=$(awk -F': ' '/^(model name|CPU part)/ { print $2; exit }' /proc/cpuinfo)"
    echo "c2s_listen=0.0.0.0:5222"
    echo "component_listen=0.0.0.0:5347"
    echo "data_dir=$S/data"
    ;;
setup)
    [ -n "$(pid)" ] && kill -KILL "$(pid)" 2>/dev/null
    rm -rf $S/data $S/template $S/pid $S/server.log
    mkdir -p $S/data && chmod 700 $S/data
    body > $S/load.toml
    ;;
import)
    body | $B --config $S/load.toml user import --create >/dev/null || return 1
    rm -rf $S/template && cp -a $S/data $S/template
    ;;
start)
    [ -d $S/template ] || { echo "no accounts imported"; return 1; }
    rm -rf $S/data && cp -a $S/template $S/data
    CLOUD_NOTIFY_LOG=warn setsid $B --config $S/load.toml serve </dev/null >/dev/null 2>$S/server.log &
    echo $! > $S/pid
    # Listening on both ports (state 0A in /proc/net/tcp; 5222 = 1466, 5347 = 14E3).
    i=0
    while [ $i -lt 1200 ]; do
        kill -0 "$(pid)" 2>/dev/null || { echo "server exited"; cat $S/server.log; return 1; }
        if grep -q ':1466 00000000:0000 0A' /proc/net/tcp && grep -q ':14E3 00000000:0000 0A' /proc/net/tcp; then
            pid; return 0
        fi
        sleep 0.1; i=$((i + 1))
    done
    echo "server not listening after 120 s"; return 1
    ;;
memory)
    cat /proc/$(pid)/smaps_rollup /proc/$(pid)/status
    ;;
cpu)
    cat /proc/$(pid)/task/*/schedstat /proc/$(pid)/stat
    ;;
stop)
    p=$(pid)
    [ -n "$p" ] || { echo "no server"; return 1; }
    kill -TERM "$p"
    # wait(1) cannot reap another process's child: watch /proc. Its zombie has state Z.
    i=0
    while [ $i -lt 300 ] && [ -d /proc/$p ] && ! grep -q '^State:.*Z' /proc/$p/status 2>/dev/null; do
        sleep 0.1; i=$((i + 1))
    done
    rm -f $S/pid
    cat $S/server.log
    [ $i -lt 300 ] || { echo "server did not stop within 30 s of SIGTERM"; kill -KILL "$p"; return 1; }
    ;;
*)
    echo "unknown verb '$QUERY_STRING'"; return 1
    ;;
esac
}
run 2>&1
echo "exit=$?"
EOF
    chmod 755 "$rootfs/www/cgi-bin/ctl"
}

# The initramfs: busybox, the loader and libraries, the network modules, the binary.
build_initrd() {
    local bin=$1 rootfs=$VM_DIR/rootfs debs=$VM_DIR/debs kver moddir m
    rm -rf "$rootfs"
    mkdir -p "$rootfs"/{bin,dev,proc,sys,srv,tmp,etc,usr/bin,lib/modules}
    cp "$debs/busybox-static/bin/busybox" "$rootfs/bin/busybox"
    # glibc and libgcc_s, as the binary's dynamic section asks (no gconv, locales).
    mkdir -p "$rootfs/lib/$GNU"
    cp -a "$debs/libc6/lib/$GNU"/*.so* "$debs/libgcc-s1/lib/$GNU"/*.so* "$rootfs/lib/$GNU/" 2>/dev/null \
        || cp -a "$debs/libc6/usr/lib/$GNU"/*.so* "$debs/libgcc-s1/usr/lib/$GNU"/*.so* "$rootfs/lib/$GNU/"
    ln -s "$GNU/$LOADER" "$rootfs/lib/$LOADER"
    [[ -e $rootfs/lib/$GNU/$LOADER ]] || die "no $LOADER in libc6:$DEBARCH"
    kver=$(ls "$debs/$(cat "$debs/kernel-package")/lib/modules")
    moddir=$debs/$(cat "$debs/kernel-package")/lib/modules/$kver/kernel
    : >"$rootfs/etc/modules-order"
    for m in "${MODULES[@]}"; do
        if [[ -f $moddir/$m.ko ]]; then
            cp "$moddir/$m.ko" "$rootfs/lib/modules/$(basename "$m").ko"
        elif [[ -f $moddir/$m.ko.xz ]]; then
            xz -dc "$moddir/$m.ko.xz" >"$rootfs/lib/modules/$(basename "$m").ko"
        else
            die "module $m not in the kernel package"
        fi
        basename "$m" >>"$rootfs/etc/modules-order"
    done
    cp "$bin" "$rootfs/usr/bin/cloud-notify"
    write_init "$rootfs"
    cp "$debs/$(cat "$debs/kernel-package")"/boot/vmlinuz-* "$VM_DIR/vmlinuz"
    # fakeroot: /dev/console must be a device node, and the files root's.
    fakeroot sh -c "mknod -m 600 '$rootfs/dev/console' c 5 1 && mknod -m 666 '$rootfs/dev/null' c 1 3 \
        && cd '$rootfs' && find . | cpio -o -H newc --quiet" | gzip -1 >"$VM_DIR/initrd.gz"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

ensure_apt
if [[ -n ${CLOUD_NOTIFY_VM_BINARY:-} ]]; then
    BIN=$CLOUD_NOTIFY_VM_BINARY
else
    say "building the release binary for $TRIPLE (cross/build.sh $ARCH)"
    BIN=$(bash "$CROSS_DIR/build.sh" "$ARCH")
    BIN=${BIN%%$'\n'*}
fi
[[ -f $BIN ]] || die "no binary at '$BIN'"
fetch_packages
build_initrd "$BIN"

C2S_PORT=$(free_port) COMPONENT_PORT=$(free_port) CTL_PORT=$(free_port)
say "booting ${QEMU[0]} (4 cores, 1 GB); console: $VM_DIR/console.log"
"${QEMU[@]}" -smp 4 -m 1024 -nographic -no-reboot \
    -kernel "$VM_DIR/vmlinuz" -initrd "$VM_DIR/initrd.gz" \
    -append 'console=ttyAMA0 rdinit=/init rootfstype=ramfs panic=-1 quiet' \
    -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$C2S_PORT-:5222,hostfwd=tcp:127.0.0.1:$COMPONENT_PORT-:5347,hostfwd=tcp:127.0.0.1:$CTL_PORT-:8080" \
    -device virtio-net-device,netdev=n0 \
    </dev/null >"$VM_DIR/console.log" 2>&1 &
QEMU_PID=$!
stop_vm() {
    kill "$QEMU_PID" 2>/dev/null || true
    wait "$QEMU_PID" 2>/dev/null || true
}
trap stop_vm EXIT
# A signal ends the script through exit, so the EXIT trap stops the VM then too.
trap 'exit 130' INT TERM

CTL=$VM_DIR/ctl
cat >"$CTL" <<EOF
#!/usr/bin/env bash
# ctl VERB: one request to the agent in the VM booted by cross/vm.sh; stdin is the body.
set -euo pipefail
out=\$(curl -sS --fail --max-time 1800 --data-binary @- "http://127.0.0.1:$CTL_PORT/cgi-bin/ctl?\$1")
code=\${out##*exit=}
printf '%s\n' "\${out%exit=*}" | sed '\$d'
exit "\$code"
EOF
chmod 755 "$CTL"

started=$SECONDS
until grep -q 'cloud-notify-vm: ready' "$VM_DIR/console.log" 2>/dev/null \
    && "$CTL" info </dev/null >/dev/null 2>&1; do
    if grep -q 'cloud-notify-vm: failed' "$VM_DIR/console.log"; then
        tail -20 "$VM_DIR/console.log" >&2
        die "the guest's init failed"
    fi
    kill -0 "$QEMU_PID" 2>/dev/null || { tail -20 "$VM_DIR/console.log" >&2; die "qemu exited during boot"; }
    ((SECONDS - started < BOOT_DEADLINE_S)) || { tail -20 "$VM_DIR/console.log" >&2; die "no agent after ${BOOT_DEADLINE_S}s"; }
    sleep 0.5
done
say "up in $((SECONDS - started))s: $("$CTL" info </dev/null | tr '\n' ' ')"

export CLOUD_NOTIFY_VM_CTL=$CTL
export CLOUD_NOTIFY_VM_C2S=127.0.0.1:$C2S_PORT
export CLOUD_NOTIFY_VM_COMPONENT=127.0.0.1:$COMPONENT_PORT
if (($# > 0)); then
    "$@"
else
    # shellcheck disable=SC2086  # LOAD_ARGS is a list of words
    (cd "$ROOT" && cargo bench --bench load -- \
        --server-ctl "$CTL" --server-addr "$CLOUD_NOTIFY_VM_C2S" \
        --component-addr "$CLOUD_NOTIFY_VM_COMPONENT" --emulated --serial-connect \
        --out "$ROOT/target/load/vm-$ARCH" ${LOAD_ARGS:---sizes 1000 --modes hibernated})
fi

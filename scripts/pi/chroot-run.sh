#!/usr/bin/env bash
# Run one command inside the emulated Raspberry Pi user space (arm64 bookworm under qemu-user-static).
# Started by scripts/check-pi-emulated.sh as
#   unshare --mount --propagation private scripts/pi/chroot-run.sh [--root] ROOTFS HOME -- COMMAND...
# so every mount made here disappears with the process: no clean-up, no stale mounts.
#
# What the chroot sees:
#   /                 the cached root filesystem, read-only (with --root: writable, for preparing it)
#   /proc             a small tmpfs that looks like a Pi 5's: a fake ARM cpuinfo (qemu 7.2 passes the
#                     host's x86 one through and onnxruntime then segfaults at import),
#                     device-tree/model = "Raspberry Pi 5 Model B Rev 1.0", and every other entry a
#                     symlink into a real procfs mounted at /proc/.host (self, meminfo, mounts, ...)
#   /sys, /dev        the host's (bind mounts)
#   /tmp, /run        fresh tmpfs
#   /home/pi          HOME (a host folder: the Pi owner's home, wiped by the check for a clean state)
#   /etc/resolv.conf  the host's
# The command runs as user pi (uid 1000) with a clean environment (the host's PIP_* settings stay
# outside), or as root with --root.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
as_root=0
[ "${1:-}" = --root ] && { as_root=1; shift; }
[ $# -ge 3 ] && [ "$3" = -- ] || { echo "usage: chroot-run.sh [--root] ROOTFS HOME -- COMMAND..." >&2; exit 2; }
rootfs=$1 home=$2
shift 3

# the mount namespace must be private, or the mounts below would leak to the host
[ "$(readlink /proc/self/ns/mnt)" != "$(readlink /proc/1/ns/mnt)" ] || {
  echo "chroot-run.sh: run me under 'unshare --mount --propagation private'" >&2; exit 2; }

mount --bind "$rootfs" "$rootfs"
[ $as_root = 1 ] || mount -o remount,bind,ro "$rootfs"

# /proc of a Raspberry Pi 5
mount -t tmpfs -o mode=0555 edge-sr-pi-proc "$rootfs/proc"
mkdir "$rootfs/proc/.host"
mount -t proc proc "$rootfs/proc/.host"
for entry in "$rootfs"/proc/.host/*; do
  name=${entry##*/}
  case "$name" in [0-9]*|cpuinfo|device-tree) continue ;; esac
  ln -s ".host/$name" "$rootfs/proc/$name"
done
cp "$here/cpuinfo" "$rootfs/proc/cpuinfo"
mkdir "$rootfs/proc/device-tree"
printf 'Raspberry Pi 5 Model B Rev 1.0\0' > "$rootfs/proc/device-tree/model"
mount -o remount,ro "$rootfs/proc"

mount --rbind /sys "$rootfs/sys"
mount --rbind /dev "$rootfs/dev"
mount -t tmpfs -o mode=1777 tmpfs "$rootfs/tmp"
mount -t tmpfs -o mode=0755 tmpfs "$rootfs/run"
[ -e "$rootfs/etc/resolv.conf" ] && mount --bind /etc/resolv.conf "$rootfs/etc/resolv.conf"

path=/usr/local/bin:/usr/bin:/bin
if [ $as_root = 1 ]; then
  exec chroot "$rootfs" /usr/bin/env -i HOME=/root USER=root LOGNAME=root SHELL=/bin/bash LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/sbin:/sbin:$path "$@"
fi
mount --bind "$home" "$rootfs/home/pi"
exec chroot --userspec=1000:1000 "$rootfs" /usr/bin/env -i HOME=/home/pi USER=pi LOGNAME=pi SHELL=/bin/bash \
  LANG=C.UTF-8 PATH=$path "$@"

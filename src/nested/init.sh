#!/bin/busybox sh
# /init of the nested VM's initramfs (busybox): loads the modules the VM needs,
# makes the host's root (virtio-9p, read-only) the VM's root under a tmpfs
# overlay, mounts the read-write shares at their host paths, and runs the
# agent there. Parameters come on the kernel command line:
#   xenkvm.node=PATH xenkvm.agent=PATH xenkvm.shares=PATH:PATH...
# (share N is the 9p tag shareN). Anything that fails powers the VM off, and
# the runner reports the console's last lines.
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
  echo "xenkvm-nested-init: $*"
  poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in /modules/*.ko; do
  insmod "$m" || fail "cannot load module $m"
done
# Loopback, as any machine has it: the tests reach user-mode networking's port forwards on 127.0.0.1.
ip link set lo up || fail "cannot bring up the loopback interface"

for word in $(cat /proc/cmdline); do
  case "$word" in
    xenkvm.node=*) node="${word#xenkvm.node=}" ;;
    xenkvm.agent=*) agent="${word#xenkvm.agent=}" ;;
    xenkvm.shares=*) shares="${word#xenkvm.shares=}" ;;
  esac
done
[ -n "$node" ] && [ -n "$agent" ] || fail "xenkvm.node and xenkvm.agent must be on the kernel command line"

ninep="trans=virtio,version=9p2000.L,msize=524288"
# The root is read-only and the host leaves it alone meanwhile, so it is cached: its files (node, the
# libraries, QEMU) are read over 9p once rather than at every open. The shares, which the VM writes
# and the host reads, are not.
mount -t 9p -o "$ninep,cache=loose,ro" hostroot /lower || fail "cannot mount the host's root (9p tag hostroot)"
mount -t tmpfs -o mode=755 overlay-rw /rw || fail "cannot mount the overlay's tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /root || fail "cannot mount the overlay"

# The VM's own /tmp and /run first: a share below them (a checkout in /tmp) goes on top.
for dir in /tmp /run; do mount -t tmpfs -o mode=1777 tmpfs "/root$dir"; done
i=0
for path in $(echo "$shares" | tr ':' ' '); do
  mkdir -p "/root$path" && mount -t 9p -o "$ninep,cache=none" "share$i" "/root$path" || fail "cannot mount share$i at $path"
  i=$((i + 1))
done

mount --move /proc /root/proc
mount --move /sys /root/sys
mount --move /dev /root/dev
mkdir -p /root/dev/pts /root/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /root/dev/pts
ln -sf pts/ptmx /root/dev/ptmx 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs /root/dev/shm

chroot /root "$node" "$agent"
echo "xenkvm-nested-init: the agent exited with status $?"
sync
poweroff -f

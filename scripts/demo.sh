#!/bin/sh
# `make demo`: what Corral does today, on this machine, with no network.
#
# corrald does not serve yet, so the demo shows Corral's shim doing its job for a stock
# containerd 1.6: a private containerd (its own root, state and sockets, in a private mount
# namespace with its own /run; the host's containerd is never touched) runs the bundled busybox
# image through containerd-shim-corral-v2. Needs root, containerd, ctr and runc; without them it
# shows the binaries' versions and says what is missing.
set -eu
bin=${1:?usage: demo.sh RELEASE_DIR}
bin=$(cd "$bin" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step "release binaries"
for b in corrald corralctl containerd-shim-corral-v2; do
	printf '%-28s %8d bytes\n' "$b" "$(stat -c %s "$bin/$b")"
done
step "containerd-shim-corral-v2 -v"
"$bin/containerd-shim-corral-v2" -v

missing=""
[ "$(id -u)" = 0 ] || missing="$missing root"
for t in containerd ctr runc unshare; do
	command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
done
if [ -n "$missing" ]; then
	printf '\nThe container part of the demo needs:%s (as root: apt-get install containerd runc).\n' "$missing"
	exit 0
fi

dir=$(mktemp -d /tmp/corral-demo.XXXXXX)
mkdir -p "$dir/bin"
ln -s "$bin/containerd-shim-corral-v2" "$dir/bin/"
cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
EOF

# containerd runs in a mount namespace of its own with a private /run; ctr runs inside it too.
unshare --mount --propagation private sh -c \
	"mount -t tmpfs tmpfs /run && PATH=$dir/bin:\$PATH exec containerd --config $dir/config.toml" \
	>"$dir/containerd.log" 2>&1 &
cpid=$!
cleanup() {
	ctrx tasks kill -s SIGKILL demo-sleep >/dev/null 2>&1 || true
	sleep 0.5
	ctrx tasks delete demo-sleep >/dev/null 2>&1 || true
	ctrx containers delete demo-sleep >/dev/null 2>&1 || true
	kill "$cpid" 2>/dev/null || true
	wait "$cpid" 2>/dev/null || true
	for d in /sys/fs/cgroup/*/demo /sys/fs/cgroup/demo; do rmdir "$d" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM
ctrx() { nsenter --target "$cpid" --mount -- ctr --address "$dir/containerd.sock" --namespace demo "$@"; }

i=0
until [ -S "$dir/containerd.sock" ]; do
	i=$((i + 1))
	if [ $i -gt 100 ] || ! kill -0 "$cpid" 2>/dev/null; then
		echo "containerd did not start:"; tail -20 "$dir/containerd.log"; exit 1
	fi
	sleep 0.1
done

step "ctr images import busybox-oci.tar   (the bundled image, no network)"
ctrx images import "$repo/tests/fixtures/busybox-oci.tar"

step "ctr run --rm --runtime io.containerd.corral.v2 docker.io/corral/busybox:latest demo-hello echo hello from corral"
ctrx run --rm --runtime io.containerd.corral.v2 docker.io/corral/busybox:latest demo-hello echo hello from corral

step "ctr run -d --runtime io.containerd.corral.v2 ... demo-sleep sleep 1000; ctr tasks ls"
ctrx run -d --runtime io.containerd.corral.v2 docker.io/corral/busybox:latest demo-sleep sleep 1000
ctrx tasks ls

shim=$(pgrep -f "containerd-shim-corral-v2 .*-id demo-sleep" | head -1)
sleep 6
step "the shim of demo-sleep (pid $shim), idle for 6 s"
grep -E '^(Threads|VmRSS)' "/proc/$shim/status"

printf '\nDemo finished; everything it started is being removed.\n'

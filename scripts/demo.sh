#!/bin/sh
# `make demo`: Corral running containers on this machine, with no network.
#
#   sh scripts/demo.sh prepare       as root: install the runtime packages missing (runc)
#   sh scripts/demo.sh RELEASE_DIR   as root: the demo, with the binaries `make release` built
#
# The demo starts a private corrald (its own root, state and socket in a temporary directory;
# /run/containerd, /var/lib/containerd and /run/corral are never touched), imports the bundled
# busybox image, runs a container that prints a greeting, shows a detached one in
# `corralctl tasks ls`, then removes everything it made, also when a step fails.
set -eu

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
show() {
	step "$*"
	"$@"
}

if [ "$(id -u)" != 0 ]; then
	echo "demo.sh: the demo runs containers, which needs root: run \`sudo make demo\`" >&2
	exit 1
fi

if [ "${1:-}" = prepare ]; then
	command -v runc >/dev/null 2>&1 && exit 0
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "demo.sh: runc is missing and this is not a Debian or Ubuntu machine: install runc" >&2
		exit 1
	fi
	show apt-get update
	show env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends runc
	exit 0
fi

bin=${1:?usage: demo.sh prepare | demo.sh RELEASE_DIR}
bin=$(cd "$bin" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
ns=demo
image=docker.io/corral/busybox:latest

step "release binaries"
for b in corrald corralctl containerd-shim-corral-v2; do
	printf '%-28s %8d bytes\n' "$b" "$(stat -c %s "$bin/$b")"
done

dir=$(mktemp -d /tmp/corral-demo.XXXXXX)
# The release binaries first: corrald finds the shim on its PATH.
PATH=$bin:$PATH
CORRAL_ADDRESS=$dir/corral.sock
CORRAL_NAMESPACE=$ns
export PATH CORRAL_ADDRESS CORRAL_NAMESPACE
# Cgroups the containers' parent (/<namespace>) may leave; those already there stay.
cgroups_before=" $(echo $(ls -d /sys/fs/cgroup/$ns /sys/fs/cgroup/*/$ns 2>/dev/null)) "
cpid=""

# The command line of process $1, arguments separated by spaces (empty once it is gone).
cmdline() { { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null; }

# Processes whose command line mentions the demo's directory (corrald, its shims).
demo_pids() {
	for p in /proc/[0-9]*; do
		case "$(cmdline "${p#/proc/}")" in
		*"$dir"*) echo "${p#/proc/}" ;;
		esac
	done
}

# Mount points under the demo's directory, deepest first.
demo_mounts() {
	awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

cleanup() {
	status=$?
	trap - EXIT INT TERM
	set +e
	printf '\nCleaning up.\n'
	if [ -n "$cpid" ] && kill -0 "$cpid" 2>/dev/null; then
		for id in $(corralctl tasks ls -q 2>/dev/null); do
			corralctl tasks kill --signal SIGKILL "$id" >/dev/null 2>&1
		done
		i=0
		while corralctl tasks ls 2>/dev/null | grep -q RUNNING && [ $i -lt 50 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		for id in $(corralctl tasks ls -q 2>/dev/null); do
			corralctl tasks delete "$id" >/dev/null 2>&1
		done
		for id in $(corralctl containers ls -q 2>/dev/null); do
			corralctl containers rm "$id" >/dev/null 2>&1
		done
		kill -TERM "$cpid" 2>/dev/null
		wait "$cpid"
	fi
	# Whatever a failure left: containers through runc, then shims, mounts, cgroups, files.
	for id in $(runc --root "$dir/runc/$ns" list -q 2>/dev/null); do
		runc --root "$dir/runc/$ns" delete --force "$id"
	done
	for p in $(demo_pids); do kill -KILL "$p" 2>/dev/null; done
	for m in $(demo_mounts); do umount "$m" 2>/dev/null || umount -l "$m"; done
	for d in /sys/fs/cgroup/$ns /sys/fs/cgroup/*/$ns; do
		[ -d "$d" ] || continue
		case "$cgroups_before" in *" $d "*) continue ;; esac
		for c in "$d"/*/; do [ -d "$c" ] && rmdir "$c"; done
		rmdir "$d"
	done
	if [ -z "$(demo_mounts)" ]; then
		rm -rf "$dir"
	else
		echo "demo.sh: $dir is still mounted on, so it stays" >&2
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$dir/corrald.toml" <<EOF
version = 2
EOF
step "corrald --config $dir/corrald.toml --root $dir/root --state $dir/state --address $CORRAL_ADDRESS &"
corrald --config "$dir/corrald.toml" --root "$dir/root" --state "$dir/state" \
	--address "$CORRAL_ADDRESS" </dev/null >"$dir/corrald.log" 2>&1 &
cpid=$!
i=0
until [ -S "$CORRAL_ADDRESS" ]; do
	i=$((i + 1))
	if [ $i -gt 100 ] || ! kill -0 "$cpid" 2>/dev/null; then
		echo "corrald did not start:"
		tail -20 "$dir/corrald.log"
		exit 1
	fi
	sleep 0.1
done

step "export CORRAL_ADDRESS=$CORRAL_ADDRESS CORRAL_NAMESPACE=$ns   # where corralctl goes"
show corralctl version
show corralctl images import "$repo/tests/fixtures/busybox-oci.tar"
show corralctl images ls
show corralctl run --rm --fifo-dir "$dir/fifo" "$image" hello echo hello
show corralctl run -d --fifo-dir "$dir/fifo" "$image" sleeper sleep 1000
show corralctl tasks ls

printf '\nMemory of corrald and of the shim serving sleeper:\n'
for p in $(demo_pids); do
	name=""
	[ "$p" = "$cpid" ] && name=corrald
	case "$(cmdline "$p")" in
	*containerd-shim-corral-v2*" -id sleeper "*) name="shim of sleeper" ;;
	esac
	[ -n "$name" ] || continue
	printf '  %-16s %6s kB RSS  %6s kB Pss\n' "$name" \
		"$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status")" \
		"$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup")"
done

show corralctl tasks kill --signal SIGKILL sleeper
i=0
while corralctl tasks ls | grep -q RUNNING && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
show corralctl tasks delete sleeper
show corralctl containers rm sleeper

printf '\nDemo finished.\n'

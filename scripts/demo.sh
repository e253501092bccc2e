#!/bin/sh
# `make demo`: what Corral does today, on this machine, with nothing but the built binaries.
# Each issue that lands makes this do more; today the binaries answer --version and --help,
# and corralctl shows how it reports a daemon that is not there.
set -eu
bin=${1:?usage: demo.sh RELEASE_DIR}

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step "ls -l (release binaries)"
for b in corrald corralctl containerd-shim-corral-v2; do
	printf '%-28s %8d bytes\n' "$b" "$(stat -c %s "$bin/$b")"
done

step "containerd-shim-corral-v2 -v"
"$bin/containerd-shim-corral-v2" -v

step "corrald --version"
"$bin/corrald" --version

step "corralctl --help"
"$bin/corralctl" --help

step "corralctl --address /tmp/corral-demo-none.sock version   (no daemon yet: a clear error, exit 1)"
if "$bin/corralctl" --address /tmp/corral-demo-none.sock version; then
	echo "unexpected: a daemon answered" >&2
	exit 1
fi

printf '\nDemo finished. corrald does not serve yet; see README.md for what works today.\n'

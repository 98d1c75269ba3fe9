#!/usr/bin/env bash
# Builds everything the benchmark needs (release) and runs it: Strata against containerd's
# own overlay snapshotter, both over containerd's snapshots gRPC API, each on a fresh ext4
# loop disk. Prints the table; never fails on timing (only if something breaks).
#
#   sudo bench/run.sh                          the default table (~3-5 min)
#   sudo bench/run.sh --json /tmp/bench.json   ... and a JSON copy
#   sudo bench/run.sh scale                    the scale curve (1k / 10k / 100k snapshots)
#   sudo bench/run.sh scale --sizes 1000,10000
#   sudo bench/run.sh floor                    the filesystem floor alone
#   sudo bench/run.sh --help                   every option
#
# Arguments go to strata-bench unchanged. CARGO_TARGET_DIR defaults to
# /var/tmp/strata-target (as for scripts/); the anchor goes to /var/tmp/strata-bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/common.sh
require_root "$@"
ensure_apt e2fsprogs util-linux strace golang-go golang-github-containerd-containerd-dev
ensure_rust

ANCHOR=/var/tmp/strata-bench/strata-anchor
echo "bench/run.sh: building strata and strata-bench (release, $CARGO_TARGET_DIR)" >&2
build_release
echo "bench/run.sh: building the containerd anchor ($ANCHOR)" >&2
bench/anchor/build.sh "$ANCHOR"

# strata-bench's defaults are exactly these binaries: `strata` next to itself, and $ANCHOR.
exec "$CARGO_TARGET_DIR/release/strata-bench" "$@"

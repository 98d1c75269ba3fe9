#!/usr/bin/env bash
# Builds bench/anchor (strata-anchor: containerd's own overlay/native
# snapshotter served over the snapshots gRPC API) offline, in GOPATH mode,
# against the Debian-packaged containerd 1.6 sources.
#
#   bench/anchor/build.sh [OUTPUT]     (default /var/tmp/strata-bench/strata-anchor)
#   bench/anchor/build.sh --btrfs [OUTPUT]
#       (default /var/tmp/strata-bench/strata-anchor-btrfs): a cgo build that can also serve
#       containerd's btrfs snapshotter (-backend btrfs), for `strata-bench btrfs`; it needs
#       gcc and libbtrfs-dev besides the packages below.
#
# Prerequisites: apt-get install golang-go golang-github-containerd-containerd-dev
# (scripts/lib/common.sh: go_offline).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$SCRIPT_DIR/../../scripts/lib/common.sh"
cgo=0
if [ "${1:-}" = --btrfs ]; then
  cgo=1
  shift
  OUT=${1:-/var/tmp/strata-bench/strata-anchor-btrfs}
else
  OUT=${1:-/var/tmp/strata-bench/strata-anchor}
fi
CONTAINERD_SRC=/usr/share/gocode/src/github.com/containerd/containerd

die() { echo "build.sh: error: $*" >&2; exit 1; }
if [ "$cgo" = 1 ]; then
  [ -f /usr/include/btrfs/ioctl.h ] ||
    die "libbtrfs headers not found: apt-get install libbtrfs-dev (and gcc)"
fi
go_offline "$SCRIPT_DIR" || exit 1
export CGO_ENABLED=$cgo
mkdir -p "$(dirname "$OUT")"

# -p 1: the machine is small and other builds may be running.
go build -p 1 -trimpath -o "$OUT" strataanchor
go vet strataanchor
echo "build.sh: built $OUT ($(go version | awk '{print $3}'), containerd $(sed -n 's/^\tVersion = "\(.*\)"/\1/p' "$CONTAINERD_SRC/version/version.go" 2>/dev/null || echo 1.6))" >&2

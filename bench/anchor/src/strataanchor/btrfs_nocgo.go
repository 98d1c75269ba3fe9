//go:build !cgo

package main

import (
	"errors"

	"github.com/containerd/containerd/snapshots"
)

// newBtrfs fails in the default (CGO_ENABLED=0) build: containerd's btrfs snapshotter needs
// cgo. `build.sh --btrfs` builds strata-anchor-btrfs with it.
func newBtrfs(root string) (snapshots.Snapshotter, error) {
	return nil, errors.New("this strata-anchor was built without cgo; containerd's btrfs snapshotter needs it: bench/anchor/build.sh --btrfs")
}

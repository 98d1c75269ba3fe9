//go:build cgo

package main

import (
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/btrfs"
)

// newBtrfs is containerd 1.6's btrfs snapshotter, which needs cgo and libbtrfs's headers
// (Debian's libbtrfs-dev): its subvolume calls go through github.com/containerd/btrfs.
func newBtrfs(root string) (snapshots.Snapshotter, error) {
	return btrfs.NewSnapshotter(root)
}

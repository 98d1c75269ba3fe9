// Command strata-anchor serves one of containerd's built-in snapshotters
// (containerd 1.6.x as packaged by Debian) over containerd's snapshots gRPC
// API (containerd.services.snapshots.v1.Snapshots) on a unix socket, exactly
// the API Strata serves. It is the baseline ("anchor") that strata-bench
// measures Strata against.
//
//	strata-anchor -root DIR -address SOCK -backend overlay|native|btrfs
//
// The overlay snapshotter is configured as containerd 1.6's "overlayfs"
// plugin configures it by default (snapshots/overlay/plugin): with
// overlay.AsynchronousRemove and without the upperdir label. The native
// snapshotter takes no options.
//
// The request's snapshotter field and the containerd-namespace metadata are
// ignored: the snapshotter sees the keys exactly as the client sends them.
//
// SIGTERM or SIGINT stops the server gracefully (in-flight requests finish,
// at most 10 s), closes the snapshotter (its bolt metadata store), removes
// the socket and exits 0.
//
// Build (offline, GOPATH mode): see ../../build.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/native"
	"github.com/containerd/containerd/snapshots/overlay"
	"google.golang.org/grpc"
)

// maxMsgSize matches containerd 1.6's defaults.DefaultMaxRecvMsgSize and
// DefaultMaxSendMsgSize (16 MiB), which containerd's own gRPC server uses.
const maxMsgSize = 16 << 20

func main() {
	root := flag.String("root", "", "root directory of the snapshotter (required)")
	address := flag.String("address", "", "unix socket to serve on (required)")
	backend := flag.String("backend", "overlay", "snapshotter: overlay or native")
	flag.Parse()
	if *root == "" || *address == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: strata-anchor -root DIR -address SOCK [-backend overlay|native|btrfs]")
		os.Exit(2)
	}
	if err := run(*root, *address, *backend); err != nil {
		fmt.Fprintf(os.Stderr, "strata-anchor: %v\n", err)
		os.Exit(1)
	}
}

func newSnapshotter(root, backend string) (snapshots.Snapshotter, error) {
	switch backend {
	case "overlay", "overlayfs":
		// As containerd 1.6's overlayfs plugin does by default.
		return overlay.NewSnapshotter(root, overlay.AsynchronousRemove)
	case "native":
		return native.NewSnapshotter(root)
	case "btrfs":
		// Only in a cgo build (build.sh --btrfs): see btrfs_cgo.go.
		return newBtrfs(root)
	default:
		return nil, fmt.Errorf("unknown backend %q (expected overlay, native or btrfs)", backend)
	}
}

func run(root, address, backend string) error {
	sn, err := newSnapshotter(root, backend)
	if err != nil {
		return fmt.Errorf("opening the %s snapshotter on %s: %w", backend, root, err)
	}
	defer sn.Close()

	if err := os.MkdirAll(filepath.Dir(address), 0o711); err != nil {
		return err
	}
	if err := os.Remove(address); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("removing stale socket %s: %w", address, err)
	}
	l, err := net.Listen("unix", address)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", address, err)
	}
	defer os.Remove(address)

	server := grpc.NewServer(
		grpc.MaxRecvMsgSize(maxMsgSize),
		grpc.MaxSendMsgSize(maxMsgSize),
	)
	snapshotsapi.RegisterSnapshotsServer(server, snapshotservice.FromSnapshotter(sn))

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	served := make(chan error, 1)
	go func() { served <- server.Serve(l) }()

	select {
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	case <-signals:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stopped := make(chan struct{})
	go func() { server.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "strata-anchor: graceful stop timed out; stopping")
		server.Stop()
	}
	if err := sn.Close(); err != nil {
		return fmt.Errorf("closing the snapshotter: %w", err)
	}
	return nil
}

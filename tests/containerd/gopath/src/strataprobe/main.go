// Command strataprobe talks to the Strata daemon directly (not through
// containerd) with containerd's own proxy snapshotter client, so that the
// end-to-end test can see what Strata itself holds.
//
//	strataprobe SOCKET SNAPSHOTTER walk            one line per snapshot:
//	                                               <kind> <name> <parent|-> <label>=<value>,...
//	strataprobe SOCKET SNAPSHOTTER stat KEY        the same line for one snapshot
//	strataprobe SOCKET SNAPSHOTTER usage KEY       <size> <inodes>
//	strataprobe SOCKET SNAPSHOTTER cleanup         calls Cleanup
//
// A failing call prints "error: <class>: <message>" on stderr (the class is the
// containerd errdefs class of the gRPC code, e.g. not-found) and exits 1.
// Build (offline, GOPATH mode): see ../../../run.sh.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"google.golang.org/grpc"
)

func line(info snapshots.Info) string {
	parent := info.Parent
	if parent == "" {
		parent = "-"
	}
	var labels []string
	for k, v := range info.Labels {
		labels = append(labels, k+"="+v)
	}
	sort.Strings(labels)
	return fmt.Sprintf("%s %s %s %s", info.Kind, info.Name, parent, strings.Join(labels, ","))
}

func fail(err error) {
	class := "unknown"
	switch {
	case errdefs.IsNotFound(err):
		class = "not-found"
	case errdefs.IsAlreadyExists(err):
		class = "already-exists"
	case errdefs.IsFailedPrecondition(err):
		class = "failed-precondition"
	case errdefs.IsInvalidArgument(err):
		class = "invalid-argument"
	case errdefs.IsUnavailable(err):
		class = "unavailable"
	case errdefs.IsNotImplemented(err):
		class = "not-implemented"
	}
	fmt.Fprintf(os.Stderr, "error: %s: %v\n", class, err)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: strataprobe SOCKET SNAPSHOTTER walk|stat KEY|usage KEY|cleanup")
		os.Exit(2)
	}
	sock, name, cmd := os.Args[1], os.Args[2], os.Args[3]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, "unix://"+sock,
		grpc.WithInsecure(),
		grpc.WithBlock(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}))
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), name)

	switch {
	case cmd == "walk" && len(os.Args) == 4:
		var lines []string
		if err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
			lines = append(lines, line(info))
			return nil
		}); err != nil {
			fail(err)
		}
		sort.Strings(lines)
		for _, l := range lines {
			fmt.Println(l)
		}
	case cmd == "stat" && len(os.Args) == 5:
		info, err := sn.Stat(ctx, os.Args[4])
		if err != nil {
			fail(err)
		}
		fmt.Println(line(info))
	case cmd == "usage" && len(os.Args) == 5:
		u, err := sn.Usage(ctx, os.Args[4])
		if err != nil {
			fail(err)
		}
		fmt.Printf("%d %d\n", u.Size, u.Inodes)
	case cmd == "cleanup" && len(os.Args) == 4:
		if err := sn.(snapshots.Cleaner).Cleanup(ctx); err != nil {
			fail(err)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: strataprobe SOCKET SNAPSHOTTER walk|stat KEY|usage KEY|cleanup")
		os.Exit(2)
	}
}

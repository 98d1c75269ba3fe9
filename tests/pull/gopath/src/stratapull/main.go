// stratapull pulls an image through containerd the way CRI does with
// disable_snapshot_annotations = false: unpacking into a snapshotter with the
// remote-snapshot labels (snapshotters.AppendInfoHandlerWrapper), so a
// snapshotter that commits a layer itself lets containerd skip fetching it.
//
//	stratapull CONTAINERD_SOCKET NAMESPACE SNAPSHOTTER REF
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/pkg/snapshotters"
	"github.com/containerd/containerd/remotes/docker"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: stratapull SOCKET NAMESPACE SNAPSHOTTER REF")
		os.Exit(2)
	}
	sock, ns, sn, ref := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	client, err := containerd.New(sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(1)
	}
	defer client.Close()
	ctx := namespaces.WithNamespace(context.Background(), ns)
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchAllHosts)),
	})
	img, err := client.Pull(ctx, ref,
		containerd.WithResolver(resolver),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(sn),
		containerd.WithImageHandlerWrapper(snapshotters.AppendInfoHandlerWrapper(ref)),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pull:", err)
		os.Exit(1)
	}
	fmt.Println(img.Target().Digest)
}

#!/usr/bin/env bash
# Pull straight into snapshots, end to end (needs root): Debian's docker-registry on
# 127.0.0.1, an image built offline (tests/containerd/mkimage.py) pushed with skopeo,
# containerd 1.6 with Strata as a proxy snapshotter, and stratapull (a Go client pulling
# with the remote-snapshot labels, built offline in GOPATH mode).
#
#   tests/pull/run.sh STRATA_BINARY
#
# Checks: Strata pulls every layer itself (its log), containerd's content store holds no
# layer blob afterwards, `ctr run` works on the image; a second namespace pulls the same
# image under another name (localhost), for which Strata's hosts.toml names a dead mirror,
# then a copy of the registry serving the last layer with the wrong digest: containerd pulls
# that layer through its own path (the warning names the digest mismatch), and the rootfs
# lists identically; `ctr images rm` + GC removes the
# snapshots.
set -euo pipefail
STRATA=$(realpath "${1:?usage: run.sh STRATA_BINARY}")
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
T=/var/tmp/strata-pull-e2e
PORT=${PULL_TEST_PORT:-5731}
DEAD_PORT=$((PORT + 1))
fail() { echo "pull/run.sh: FAIL: $*" >&2; exit 1; }
note() { echo "pull/run.sh: $*" >&2; }
[ "$(id -u)" = 0 ] || fail "needs root"
for p in docker-registry skopeo containerd runc go; do
  command -v $p >/dev/null || { apt-get install -y docker-registry skopeo containerd runc golang-go golang-github-containerd-containerd-dev >/dev/null; break; }
done

PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done; kill -9 "$p" 2>/dev/null; done
  grep " $T/" /proc/self/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l
}
trap cleanup EXIT
cleanup; rm -rf "$T"; mkdir -p "$T"

note "building stratapull (offline, GOPATH mode)"
(cd "$HERE/gopath" && GO111MODULE=off GOPATH="$HERE/gopath:/usr/share/gocode" GOPROXY=off CGO_ENABLED=0 \
  GOCACHE=/var/tmp/strata-gocache go build -p 1 -o "$T/stratapull" stratapull) || fail "building stratapull"

cat >"$T/registry.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $T/registry
http:
  addr: 127.0.0.1:$PORT
EOF
docker-registry serve "$T/registry.yml" >"$T/registry.log" 2>&1 & PIDS+=($!)

REF=127.0.0.1:$PORT/strata/pulltest:1
python3 "$REPO/tests/containerd/mkimage.py" /bin/busybox "$T/img.tar" "$REF" 4 >"$T/ids"
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.2; done
skopeo copy -q --dest-tls-verify=false "oci-archive:$T/img.tar" "docker://$REF" || fail "skopeo push"
LAYERS=$(python3 -c 'import json,sys,tarfile
t=tarfile.open(sys.argv[1]); idx=json.load(t.extractfile("index.json"))
m=json.load(t.extractfile("blobs/sha256/"+idx["manifests"][0]["digest"].split(":")[1]))
print(" ".join(l["digest"] for l in m["layers"]))' "$T/img.tar")

# A copy of the registry on BAD_PORT whose last layer blob has the wrong digest: same
# size and same content, but the gzip header's MTIME bytes changed.
BAD_PORT=$((PORT + 2))
LAST=$(echo "$LAYERS" | awk '{print $NF}'); LASTHEX=${LAST#sha256:}
cp -a "$T/registry" "$T/registry-bad"
python3 -c 'import sys
f = open(sys.argv[1], "r+b"); assert f.read(2) == b"\x1f\x8b", "not gzip"
f.seek(4); f.write(b"\x01\x02\x03\x04"); f.close()' \
  "$T/registry-bad/docker/registry/v2/blobs/sha256/${LASTHEX:0:2}/$LASTHEX/data"
sed -e "s#$T/registry\$#$T/registry-bad#" -e "s#:$PORT\$#:$BAD_PORT#" "$T/registry.yml" >"$T/registry-bad.yml"
docker-registry serve "$T/registry-bad.yml" >"$T/registry-bad.log" 2>&1 & PIDS+=($!)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$BAD_PORT/v2/" >/dev/null && break; sleep 0.2; done

# Strata's hosts: the registry over plain HTTP; "localhost:PORT" (the same registry under
# another name, which containerd reaches) names for Strata a mirror on a closed port, then
# the copy with the wrong blob, so the last layer falls back on a digest mismatch.
mkdir -p "$T/certs.d/127.0.0.1:$PORT" "$T/certs.d/localhost:$PORT"
echo "server = \"http://127.0.0.1:$PORT\"" >"$T/certs.d/127.0.0.1:$PORT/hosts.toml"
printf 'server = "http://127.0.0.1:%s"\n[host."http://127.0.0.1:%s"]\n  capabilities = ["pull", "resolve"]\n' \
  "$BAD_PORT" "$DEAD_PORT" >"$T/certs.d/localhost:$PORT/hosts.toml"
cat >"$T/strata.toml" <<EOF
root = "$T/strata"
address = "$T/strata.sock"
containerd_address = ""
[pull]
hosts_dir = "$T/certs.d"
retries = 0
connect_timeout_secs = 2
EOF
RUST_LOG=info NO_COLOR=1 setsid "$STRATA" serve --config "$T/strata.toml" >"$T/strata.log" 2>&1 & PIDS+=($!)

cat >"$T/containerd.toml" <<EOF
version = 2
root = "$T/containerd/root"
state = "$T/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$T/containerd.sock"
[ttrpc]
  address = "$T/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$T/containerd/opt"
[proxy_plugins.strata]
  type = "snapshot"
  address = "$T/strata.sock"
EOF
setsid containerd --config "$T/containerd.toml" >"$T/containerd.log" 2>&1 & PIDS+=($!)
CTR="ctr -a $T/containerd.sock"
for _ in $(seq 100); do [ -S "$T/strata.sock" ] && timeout 5 $CTR version >/dev/null 2>&1 && break; sleep 0.2; done

note "pull with remote-snapshot labels into Strata"
T0=$(date +%s.%N)
timeout 120 "$T/stratapull" "$T/containerd.sock" pa strata "$REF" || fail "pull (ns pa)"
note "pulled in $(echo "$(date +%s.%N) - $T0" | bc) s"
pulled=$(grep -c "layer pulled into a snapshot" "$T/strata.log" || true)
[ "$pulled" = 4 ] || fail "Strata pulled $pulled layers itself, expected 4 (see $T/strata.log)"
for l in $LAYERS; do
  if $CTR -n pa content ls -q | grep -qx "$l"; then fail "layer blob $l is in containerd's content store"; fi
done
note "PASS: 4 layers pulled by Strata, no layer blob in containerd's content store"

$CTR -n pa run --rm --snapshotter strata "$REF" c1 /bin/cat /data/layer4.txt >"$T/run.out" || fail "ctr run"
[ -s "$T/run.out" ] || fail "ctr run printed nothing"
note "PASS: ctr run on the pulled image"

note "fallback: for localhost:$PORT Strata finds a dead mirror, then a blob with the wrong digest"
REF2=localhost:$PORT/strata/pulltest:1
timeout 120 "$T/stratapull" "$T/containerd.sock" pb strata "$REF2" || fail "fallback pull (ns pb)"
grep "containerd pulls it instead" "$T/strata.log" | grep -F "$LAST" | grep -q "digest mismatch" \
  || fail "no digest-mismatch fallback warning for $LAST in $T/strata.log"
$CTR -n pb run --rm --snapshotter strata "$REF2" c2 /bin/cat /data/layer4.txt >"$T/run2.out" || fail "ctr run (fallback)"
cmp -s "$T/run.out" "$T/run2.out" || fail "the two pulls show different /data/layer4.txt"
note "PASS: fallback pull works"

listing() { # listing NS REF OUT: canonical listing of the image's rootfs
  local chain; chain=$(tail -1 "$T/ids")
  mkdir -p "$T/mnt-$1"
  # A synchronous GC first: the view carries no gc.root label, and a collection the pull
  # scheduled could otherwise take it before it is mounted.
  $CTR -n "$1" leases create --id "gcwait-$1" >/dev/null && $CTR -n "$1" leases rm --sync "gcwait-$1" >/dev/null
  $CTR -n "$1" snapshots --snapshotter strata view "view-$1" "$chain" >/dev/null
  $CTR -n "$1" snapshots --snapshotter strata mounts "$T/mnt-$1" "view-$1" | sh
  python3 "$REPO/tests/differ/listing.py" tree "$T/mnt-$1" >"$3"
  umount "$T/mnt-$1"
  $CTR -n "$1" snapshots --snapshotter strata rm "view-$1"
}
listing pa "$REF" "$T/list-pa"; listing pb "$REF2" "$T/list-pb"
diff -u "$T/list-pb" "$T/list-pa" >"$T/list.diff" || fail "rootfs listings differ (remote vs ordinary): $T/list.diff"
note "PASS: rootfs identical to the ordinary path's ($(wc -l <"$T/list-pa") entries)"

for ns in pa pb; do
  $CTR -n $ns images rm --sync "$([ $ns = pa ] && echo "$REF" || echo "$REF2")" >/dev/null
done
left=$($CTR -n pa snapshots --snapshotter strata ls | tail -n +2 | wc -l)
[ "$left" = 0 ] || fail "$left snapshots left after images rm + GC"
note "PASS: images rm + GC removed the snapshots"
echo "pull/run.sh: all checks passed"

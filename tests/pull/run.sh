#!/usr/bin/env bash
# Pull straight into snapshots, end to end (needs root): Debian's docker-registry on
# 127.0.0.1, an image built offline (tests/containerd/mkimage.py) pushed with skopeo,
# containerd 1.6 with Strata as a proxy snapshotter for both backends (`strata` = overlay,
# `strata-native`), and stratapull (a Go client pulling with the remote-snapshot labels,
# built offline in GOPATH mode).
#
#   tests/pull/run.sh STRATA_BINARY [BACKEND...]     (default: overlay native)
#
# STRATA_E2E_CONTAINERD=1.7: Debian 13's containerd 1.7 (fetched once, see
# scripts/lib/containerd.sh) first on PATH for this run instead of Debian 12's 1.6 (the
# client, stratapull, stays the 1.6 library: the unpacker is client-side, the metadata
# store that binds a layer by label and parent is the daemon's).
#
# For each backend:
# - a first namespace pulls the image: Strata pulls all 4 layers itself (its log), no layer
#   blob lands in containerd's content store, `ctr run` works;
# - a second namespace pulls the same image: every layer is reused (no fallback, no new
#   download, no layer blob in its content store);
# - a third namespace pulls it the ordinary way (`ctr images pull`, no labels): its rootfs
#   lists identically (canonical listing) to the second's;
# - `ctr images rm` + GC removes every snapshot from the backend;
# - HTTPS: a registry whose certificate a CA named in hosts.toml (`ca`) signed: every layer
#   pulled by Strata; without the `ca`, refused (fallback);
# - Strata killed (-9) while a layer's blob stalls: started again, it removes the half-built
#   extraction snapshot, and nothing is left after a GC;
# - fallbacks, each pull still succeeding through containerd's own path: the registry goes
#   down mid-pull (a relay that cuts a layer's body, then refuses connections); a dead mirror
#   and then a layer blob with the wrong digest; a layer of a media type Strata does not
#   apply (docker's uncompressed "foreign" type, which containerd does); and again GC
#   leaves the backend empty.
set -euo pipefail
STRATA=$(realpath "${1:?usage: run.sh STRATA_BINARY [BACKEND...]}")
shift
BACKENDS=(overlay native)
[ $# -eq 0 ] || BACKENDS=("$@")
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
T=/var/tmp/strata-pull-e2e
PORT=${PULL_TEST_PORT:-5731}
DEAD_PORT=$((PORT + 1))
BAD_PORT=$((PORT + 2))
CUT_PORT=$((PORT + 3))
TLS_PORT=$((PORT + 4))
fail() { echo "pull/run.sh: FAIL: $*" >&2; exit 1; }
note() { echo "pull/run.sh: $*" >&2; }
[ "$(id -u)" = 0 ] || fail "needs root"
case "${STRATA_E2E_CONTAINERD:-}" in
  "") ;;
  1.7) PATH=$(. "$REPO/scripts/lib/common.sh" && . "$REPO/scripts/lib/containerd.sh" && ensure_containerd17):$PATH ||
         fail "could not fetch containerd 1.7" ;;
  *) fail "STRATA_E2E_CONTAINERD='$STRATA_E2E_CONTAINERD': expected 1.7 (or unset)" ;;
esac
note "containerd $(containerd --version | awk '{print $3}') ($(command -v containerd))"
for p in docker-registry skopeo containerd runc go curl openssl; do
  command -v $p >/dev/null || { apt-get install -y docker-registry skopeo containerd runc golang-go golang-github-containerd-containerd-dev curl openssl >/dev/null; break; }
done

# One run at a time on this machine (fixed directory and ports): a second waits.
exec 9>"$T.lock"
flock -w 900 9 || fail "another tests/pull/run.sh holds $T.lock"

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

REG=http://127.0.0.1:$PORT
REF=127.0.0.1:$PORT/strata/pulltest:1
python3 "$REPO/tests/containerd/mkimage.py" /bin/busybox "$T/img.tar" "$REF" 4 >"$T/ids"
for _ in $(seq 50); do curl -sf "$REG/v2/" >/dev/null && break; sleep 0.2; done
skopeo copy -q --dest-tls-verify=false "oci-archive:$T/img.tar" "docker://$REF" || fail "skopeo push"
curl -sf -H "Accept: application/vnd.oci.image.manifest.v1+json" "$REG/v2/strata/pulltest/manifests/1" >"$T/manifest.json" \
  || fail "reading the pushed manifest"
read -r -a LAYER_LIST <<<"$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))
print(" ".join(l["digest"] for l in m["layers"]))' "$T/manifest.json")"
LAYERS="${LAYER_LIST[*]}"
LAST=${LAYER_LIST[3]}; LASTHEX=${LAST#sha256:}

# The same image as strata/foreign:1, its second layer typed as docker's uncompressed
# "foreign" layer: containerd applies that type (it detects the compression), Strata does not.
FREF=127.0.0.1:$PORT/strata/foreign:1
FOREIGN=${LAYER_LIST[1]}
for d in $(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))
print(m["config"]["digest"], " ".join(l["digest"] for l in m["layers"]))' "$T/manifest.json"); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$REG/v2/strata/foreign/blobs/uploads/?mount=$d&from=strata/pulltest")
  [ "$code" = 201 ] || fail "mounting blob $d into strata/foreign: HTTP $code"
done
python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))
m["layers"][1]["mediaType"] = "application/vnd.docker.image.rootfs.foreign.diff.tar"
open(sys.argv[2], "w").write(json.dumps(m))' "$T/manifest.json" "$T/foreign.json"
curl -sf -X PUT -H "Content-Type: application/vnd.oci.image.manifest.v1+json" \
  --data-binary @"$T/foreign.json" "$REG/v2/strata/foreign/manifests/1" >/dev/null || fail "pushing strata/foreign:1"

# A copy of the registry on BAD_PORT whose last layer blob has the wrong digest: same
# size and same content, but the gzip header's MTIME bytes changed.
cp -a "$T/registry" "$T/registry-bad"
python3 -c 'import sys
f = open(sys.argv[1], "r+b"); assert f.read(2) == b"\x1f\x8b", "not gzip"
f.seek(4); f.write(b"\x01\x02\x03\x04"); f.close()' \
  "$T/registry-bad/docker/registry/v2/blobs/sha256/${LASTHEX:0:2}/$LASTHEX/data"
sed -e "s#$T/registry\$#$T/registry-bad#" -e "s#:$PORT\$#:$BAD_PORT#" "$T/registry.yml" >"$T/registry-bad.yml"
docker-registry serve "$T/registry-bad.yml" >"$T/registry-bad.log" 2>&1 & PIDS+=($!)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$BAD_PORT/v2/" >/dev/null && break; sleep 0.2; done

# The registry again over HTTPS on TLS_PORT (same storage), its certificate (for IP
# 127.0.0.1) signed by a CA made here: Strata trusts it only through hosts.toml's `ca`.
mkdir -p "$T/tls"
(cd "$T/tls" &&
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=strata test CA" &&
  openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1" &&
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >server.ext &&
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext
) >"$T/tls/openssl.log" 2>&1 || fail "making the test CA: $(cat "$T/tls/openssl.log")"
sed -e "s#:$PORT\$#:$TLS_PORT#" "$T/registry.yml" >"$T/registry-tls.yml"
printf '  tls:\n    certificate: %s\n    key: %s\n' "$T/tls/server.pem" "$T/tls/server.key" >>"$T/registry-tls.yml"
docker-registry serve "$T/registry-tls.yml" >"$T/registry-tls.log" 2>&1 & PIDS+=($!)
for _ in $(seq 50); do curl -sf --cacert "$T/tls/ca.pem" "https://127.0.0.1:$TLS_PORT/v2/" >/dev/null && break; sleep 0.2; done
curl -sf --cacert "$T/tls/ca.pem" "https://127.0.0.1:$TLS_PORT/v2/" >/dev/null || fail "the TLS registry does not answer: $(tail -3 "$T/registry-tls.log")"

# Strata's hosts: the registry over plain HTTP. "localhost:PORT" is the same registry under
# another name, which containerd reaches directly; for Strata it names other servers, per
# phase (set_localhost).
REF2=localhost:$PORT/strata/pulltest:1
mkdir -p "$T/certs.d/127.0.0.1:$PORT" "$T/certs.d/localhost:$PORT"
echo "server = \"http://127.0.0.1:$PORT\"" >"$T/certs.d/127.0.0.1:$PORT/hosts.toml"
set_localhost() { # set_localhost SERVER_URL [MIRROR_PORT] [CA_FILE]
  printf 'server = "%s"\n' "$1" >"$T/certs.d/localhost:$PORT/hosts.toml"
  [ -z "${3:-}" ] || printf 'ca = "%s"\n' "$3" >>"$T/certs.d/localhost:$PORT/hosts.toml"
  [ -z "${2:-}" ] || printf '[host."http://127.0.0.1:%s"]\n  capabilities = ["pull", "resolve"]\n' \
    "$2" >>"$T/certs.d/localhost:$PORT/hosts.toml"
}
cat >"$T/strata.toml" <<EOF
root = "$T/strata"
address = "$T/strata.sock"
containerd_address = ""
[pull]
hosts_dir = "$T/certs.d"
retries = 0
connect_timeout_secs = 2
EOF
start_strata() { # (again, after a kill): appends to the same log
  RUST_LOG=info NO_COLOR=1 setsid "$STRATA" serve --config "$T/strata.toml" >>"$T/strata.log" 2>&1 &
  STRATA_PID=$!; PIDS+=($STRATA_PID)
  for _ in $(seq 100); do [ -S "$T/strata.sock" ] && "$STRATA" ls --address "$T/strata.sock" >/dev/null 2>&1 && break; sleep 0.1; done
}
start_strata

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
[proxy_plugins.strata-overlay]
  type = "snapshot"
  address = "$T/strata.sock"
[proxy_plugins.strata-native]
  type = "snapshot"
  address = "$T/strata.sock"
EOF
setsid containerd --config "$T/containerd.toml" >"$T/containerd.log" 2>&1 & PIDS+=($!)
CTR="ctr -a $T/containerd.sock"
for _ in $(seq 100); do [ -S "$T/strata.sock" ] && timeout 5 $CTR version >/dev/null 2>&1 && break; sleep 0.2; done

# Strata's log lines (pulled layers, fallbacks) since the last mark.
MARK=0
mark() { MARK=$(wc -l <"$T/strata.log"); }
since_lines() { tail -n +"$((MARK + 1))" "$T/strata.log" | grep "$1" || true; }
since() { since_lines "$1" | grep -c . || true; }
PULLED="layer pulled into a snapshot"
FELL="containerd pulls it instead"

pull() { # pull NS REF: with the remote-snapshot labels, into $SN
  timeout 120 "$T/stratapull" "$T/containerd.sock" "$1" "$SN" "$2" >/dev/null || fail "$SN: pull of $2 (ns $1)"
}
no_layer_blobs() { # no_layer_blobs NS [LAYER...]: no blob of these layers (default: all) in NS
  local l blobs; blobs=$($CTR -n "$1" content ls -q)
  for l in "${@:2}"; do
    if grep -qx "$l" <<<"$blobs"; then fail "$SN: layer blob $l is in ns $1's content store"; fi
  done
}
run_ok() { # run_ok NS REF: ctr run prints layer 4's file
  $CTR -n "$1" run --rm --snapshotter "$SN" "$2" "c-$1" /bin/cat /data/layer4.txt >"$T/run-$1.out" 2>&1 \
    || fail "$SN: ctr run in ns $1: $(cat "$T/run-$1.out")"
  grep -q layer4 "$T/run-$1.out" || fail "$SN: ctr run in ns $1 printed: $(cat "$T/run-$1.out")"
}
listing() { # listing NS OUT: canonical listing of the image's rootfs (top chain ID) in NS
  local chain; chain=$(tail -1 "$T/ids")
  mkdir -p "$T/mnt-$1"
  # A synchronous GC first: the view carries no gc.root label, and a collection the pull
  # scheduled could otherwise take it before it is mounted.
  $CTR -n "$1" leases create --id "gcwait-$1" >/dev/null && $CTR -n "$1" leases rm --sync "gcwait-$1" >/dev/null
  $CTR -n "$1" snapshots --snapshotter "$SN" view "view-$1" "$chain" >/dev/null
  $CTR -n "$1" snapshots --snapshotter "$SN" mounts "$T/mnt-$1" "view-$1" | sh
  python3 "$REPO/tests/differ/listing.py" tree "$T/mnt-$1" >"$2"
  umount "$T/mnt-$1"
  $CTR -n "$1" snapshots --snapshotter "$SN" rm "view-$1"
}
containerd_gc_now() { # containerd_gc_now NS: a synchronous GC
  $CTR -n "$1" leases create --id "gc-$1" >/dev/null && $CTR -n "$1" leases rm --sync "gc-$1" >/dev/null
}
remove_all() { # remove_all NS=REF...: images rm + GC; then the backend must hold no snapshot
  local pair left
  for pair in "$@"; do
    $CTR -n "${pair%%=*}" images rm --sync "${pair#*=}" >/dev/null || fail "$SN: images rm ${pair#*=} (ns ${pair%%=*})"
  done
  left=$("$STRATA" ls --address "$T/strata.sock" --snapshotter "$SN" | tail -n +2)
  [ -z "$left" ] || fail "$SN: snapshots left after images rm + GC: $left"
}

for BACKEND in "${BACKENDS[@]}"; do
  SN=strata-$BACKEND; B=${BACKEND:0:3}
  note "== $SN"

  mark; T0=$(date +%s.%N)
  pull "pa$B" "$REF"
  note "$SN: first namespace pulled in $(echo "$(date +%s.%N) - $T0" | bc) s"
  [ "$(since "$PULLED")" = 4 ] || fail "$SN: Strata pulled $(since "$PULLED") layers itself, expected 4 (see $T/strata.log)"
  [ "$(since "$FELL")" = 0 ] || fail "$SN: fallbacks on the first pull: $(since_lines "$FELL" | head -3)"
  no_layer_blobs "pa$B" $LAYERS
  run_ok "pa$B" "$REF"
  note "PASS $SN: 4 layers pulled by Strata, no layer blob in containerd's content store, ctr run"

  mark
  pull "pc$B" "$REF"
  [ "$(since "$FELL")" = 0 ] || fail "$SN: the second namespace fell back: $(since_lines "$FELL" | head -3)"
  [ "$(since "$PULLED")" = 0 ] || fail "$SN: the second namespace pulled $(since "$PULLED") layers again"
  no_layer_blobs "pc$B" $LAYERS
  note "PASS $SN: a second namespace reuses every layer (no fallback, no download, no layer blob)"

  mark
  $CTR -n "po$B" images pull --plain-http --snapshotter "$SN" "$REF" >"$T/ctr-pull-$B.out" 2>&1 \
    || fail "$SN: ordinary pull (ctr images pull): $(tail -3 "$T/ctr-pull-$B.out")"
  [ "$(since "$PULLED")" = 0 ] || fail "$SN: the ordinary pull went through Strata's pull path"
  listing "pc$B" "$T/list-pc$B"; listing "po$B" "$T/list-po$B"
  diff -u "$T/list-po$B" "$T/list-pc$B" >"$T/list-$B.diff" || fail "$SN: rootfs listings differ (remote vs ordinary): $T/list-$B.diff"
  note "PASS $SN: rootfs identical to the ordinary pull's ($(wc -l <"$T/list-pc$B") entries)"

  remove_all "pa$B=$REF" "pc$B=$REF" "po$B=$REF"
  note "PASS $SN: images rm + GC removed every snapshot"

  note "$SN: HTTPS: the registry with a certificate from a CA named in hosts.toml"
  set_localhost "https://127.0.0.1:$TLS_PORT" "" "$T/tls/ca.pem"
  mark
  pull "ta$B" "$REF2"
  [ "$(since "$FELL")" = 0 ] || fail "$SN: fallbacks over HTTPS: $(since_lines "$FELL" | head -3)"
  [ "$(since "$PULLED")" = 4 ] || fail "$SN: Strata pulled $(since "$PULLED") layers over HTTPS, expected 4"
  no_layer_blobs "ta$B" $LAYERS
  remove_all "ta$B=$REF2"
  note "PASS $SN: 4 layers pulled over HTTPS (CA from hosts.toml)"
  set_localhost "https://127.0.0.1:$TLS_PORT"
  mark
  pull "tb$B" "$REF2"
  since_lines "$FELL" | grep -F "${LAYER_LIST[0]}" | grep -qi "certificate" \
    || fail "$SN: no certificate fallback without the CA: $(since_lines "$FELL" | head -2)"
  [ "$(since "$PULLED")" = 0 ] || fail "$SN: Strata pulled over HTTPS from an untrusted server"
  run_ok "tb$B" "$REF2"
  remove_all "tb$B=$REF2"
  note "PASS $SN: without the CA, the untrusted server is refused and containerd pulls"

  note "$SN: Strata killed mid-layer: the half-built layer is removed when it starts again"
  STALL_PORT=$((PORT + 5))
  python3 "$HERE/cutproxy.py" "$STALL_PORT" "$PORT" 65536 stall 2>"$T/stall-$B.log" & STALL=$!; PIDS+=($STALL)
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$STALL_PORT") 2>/dev/null && break; sleep 0.1; done
  set_localhost "http://127.0.0.1:$STALL_PORT"
  timeout 60 "$T/stratapull" "$T/containerd.sock" "kx$B" "$SN" "$REF2" >"$T/kx-$B.out" 2>&1 & KX=$!
  for _ in $(seq 200); do
    "$STRATA" ls --address "$T/strata.sock" --snapshotter "$SN" | grep -q "pull-extract/" && break; sleep 0.1
  done
  "$STRATA" ls --address "$T/strata.sock" --snapshotter "$SN" | grep -q "pull-extract/" \
    || fail "$SN: no extraction snapshot while the blob stalls ($(cat "$T/stall-$B.log"))"
  mark
  kill -9 "$STRATA_PID"; wait "$STRATA_PID" 2>/dev/null || true
  start_strata
  wait "$KX" 2>/dev/null || true # the pull fails with its snapshotter gone; that is expected
  # containerd reconnects to the proxy with a backoff: wait until a Prepare reaches Strata.
  for _ in $(seq 100); do
    $CTR -n "kx$B" snapshots --snapshotter "$SN" prepare "probe-$B" >/dev/null 2>&1 && break; sleep 0.2
  done
  $CTR -n "kx$B" snapshots --snapshotter "$SN" rm "probe-$B" || fail "$SN: containerd does not reach Strata again"
  kill "$STALL"; wait "$STALL" 2>/dev/null || true
  [ "$(since "removed a half-built pulled layer")" = 1 ] || fail "$SN: no half-built layer removed on start"
  containerd_gc_now "kx$B"
  left=$("$STRATA" ls --address "$T/strata.sock" --snapshotter "$SN" | tail -n +2)
  [ -z "$left" ] || fail "$SN: snapshots left after the restart and a GC: $left"
  note "PASS $SN: killed mid-layer; the restart removed the half-built layer"

  note "$SN: fallback: the registry (as Strata reaches it) goes down mid-pull"
  python3 "$HERE/cutproxy.py" "$CUT_PORT" "$PORT" 65536 2>"$T/cut-$B.log" & PIDS+=($!)
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$CUT_PORT") 2>/dev/null && break; sleep 0.1; done
  set_localhost "http://127.0.0.1:$CUT_PORT"
  mark
  pull "fd$B" "$REF2"
  grep -q cut "$T/cut-$B.log" || fail "$SN: the relay never cut the connection"
  [ "$(since "$FELL")" -ge 1 ] || fail "$SN: no fallback when the registry went down"
  run_ok "fd$B" "$REF2"
  note "PASS $SN: registry down mid-pull: $(since "$FELL") layers fell back, $(since "$PULLED") pulled; the pull works"
  remove_all "fd$B=$REF2"

  note "$SN: fallback: a dead mirror, then a blob with the wrong digest"
  set_localhost "http://127.0.0.1:$BAD_PORT" "$DEAD_PORT"
  mark
  pull "fb$B" "$REF2"
  since_lines "$FELL" | grep -F "$LAST" | grep -q "digest mismatch" \
    || fail "$SN: no digest-mismatch fallback warning for $LAST in $T/strata.log"
  [ "$(since "$PULLED")" = 3 ] || fail "$SN: $(since "$PULLED") layers pulled past the dead mirror, expected 3"
  run_ok "fb$B" "$REF2"
  note "PASS $SN: dead mirror skipped; the wrong digest fell back; the pull works"

  note "$SN: fallback: a layer media type Strata does not apply"
  mark
  pull "fm$B" "$FREF"
  since_lines "$FELL" | grep -F "$FOREIGN" | grep -q "unsupported layer media type" \
    || fail "$SN: no media-type fallback warning for $FOREIGN in $T/strata.log"
  [ "$(since "$FELL")" = 1 ] || fail "$SN: $(since "$FELL") fallbacks for the foreign-typed image, expected 1"
  [ "$(since "$PULLED")" = 2 ] || fail "$SN: Strata pulled $(since "$PULLED") layers above the foreign one, expected 2"
  # Only the bottom layer's blob stays out: once a layer falls back, containerd's unpacker
  # fetches the blobs of every layer above it (unpacker.go), though Strata applies them.
  no_layer_blobs "fm$B" "${LAYER_LIST[0]}"
  run_ok "fm$B" "$FREF"
  note "PASS $SN: the foreign-typed layer went through containerd, the layers above it through Strata"
  remove_all "fb$B=$REF2" "fm$B=$FREF"
  note "PASS $SN: images rm + GC removed every snapshot"
done
echo "pull/run.sh: all checks passed"

#!/usr/bin/env bash
# End-to-end test of Strata's diff service under containerd 1.7 (a proxy differ needs
# containerd 1.7.4+; Debian 13's 1.7 is fetched by scripts/lib/containerd.sh).
#
#   tests/differ/run.sh [path-to-strata-binary] [overlay|native]...
#
# For each backend: a private Strata (snapshots and diff service on one socket, reading
# blobs from the private containerd's content store) and a private containerd 1.7 with the
# proxy snapshotter `strata` and the proxy differ `strata-diff`, restarted between two
# configurations: A, the diff service's order ["strata-diff", "walking"]; B, ["walking"]
# (containerd's own applier and differ). The same image (5 layers: whiteouts, opaque dirs,
# hard links, symlinks, user.* and security.capability xattrs, a fifo, devices, a 24 MiB
# file, long names, type changes) is unpacked by each, into two containerd namespaces of
# the same Strata, and:
#   - Strata applied every layer under A and none under B (its log says so), reading the
#     blobs from containerd's content directory (overlay) or, with that directory hidden
#     from it by a mount namespace of its own, streamed through the Content API (native);
#   - the two unpacked trees list identically (path, type, mode, owner, size, content hash,
#     xattrs, link target, hard-link groups: tests/differ/listing.py);
#   - a container runs on the Strata-applied image;
#   - the same changes made in a snapshot of each tree give, through `ctr snapshots diff`,
#     layers that list identically (Strata's produced from the upper directory alone), and
#     so do the diffs of each changed snapshot against the image's second layer (Strata's
#     from the two stacks mounted in a private mount namespace, or two native trees);
#   - a truncated layer and a layer whose stored blob no longer matches its digest fail to
#     unpack with errors naming the problem, and leave no snapshot behind.
#
# Prints PASS/FAIL per check and `differ e2e: N passed, M failed`; exits non-zero on any
# failure. Logs of the last run: ${STRATA_DIFFER_LOGDIR:-/var/tmp/strata-differ-e2e}.
# Needs root.
set -euo pipefail
exec 3>&1 4>&2
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
. "$REPO/scripts/lib/common.sh"
. "$REPO/scripts/lib/containerd.sh"
require_root "$@"

strata_arg=${1:-${STRATA_BIN:-$CARGO_TARGET_DIR/debug/strata}}
[ $# -gt 0 ] && shift
if [ $# -eq 0 ]; then BACKENDS=(overlay native); else BACKENDS=("$@"); fi
STRATA=$(realpath -e -- "$strata_arg")
ensure_apt runc busybox-static python3
C17=$(ensure_containerd17)
export PATH="$C17:$PATH"
case "$(containerd_version)" in 1.7.*) ;; *) echo "run.sh: containerd 1.7 expected, got $(containerd_version)" >&2; exit 2 ;; esac

LOGDIR=${STRATA_DIFFER_LOGDIR:-/var/tmp/strata-differ-e2e}
rm -rf "$LOGDIR"
mkdir -p "$LOGDIR"
T=$(mktemp -d /tmp/strata-differ.XXXXXX)
STRATA_PID="" CONTAINERD_PID=""
passed=0 failed=0

teardown() {
    [ -n "$CONTAINERD_PID" ] && kill_wait "$CONTAINERD_PID" 20 || true
    [ -n "$STRATA_PID" ] && kill_wait "$STRATA_PID" 20 || true
    CONTAINERD_PID="" STRATA_PID=""
}
cleanup() {
    set +e
    teardown
    containerd_reap "$T" strata "$T/none" >/dev/null 2>&1
    unmount_under "$T" || true
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

check() {
    local name=$1
    shift
    if "$@" >"$T/check.out" 2>&1; then
        echo "PASS: [$B] $name" >&3
        passed=$((passed + 1))
    else
        echo "FAIL: [$B] $name" >&3
        sed "s/^/    /" "$T/check.out" | tail -n 40 >&3
        failed=$((failed + 1))
    fi
}

mapfile -t IDS < <(python3 "$REPO/tests/containerd/mkimage.py" /bin/busybox "$T/img.tar" localhost/differ:5 5)
TOP=${IDS[5]}
mapfile -t TRUNC < <(python3 "$HERE/mkbroken.py" truncated "$T/truncated.tar" localhost/broken:truncated)
mapfile -t PLAIN < <(python3 "$HERE/mkbroken.py" plain "$T/plain.tar" localhost/broken:digest)

# start_containerd ORDER...: (re)starts the private containerd with the diff service's
# differs in ORDER.
start_containerd() {
    [ -n "$CONTAINERD_PID" ] && kill_wait "$CONTAINERD_PID" 20
    local config=$R/containerd.toml differs="" d
    containerd_config "$config" "$R/containerd" "$R/state" "$R/c.sock"
    containerd_proxy_plugin "$config" strata snapshot "$R/strata.sock"
    containerd_proxy_plugin "$config" strata-diff diff "$R/strata.sock"
    for d in "$@"; do differs+="\"$d\", "; done
    printf '\n[plugins."io.containerd.service.v1.diff-service"]\n  default = [%s]\n' "${differs%, }" >>"$config"
    containerd_start "$config" "$LOGDIR/$B-containerd.log" "$R/c.sock"
}

ctr_() { ctr -a "$R/c.sock" "$@"; }
applied() { grep -c "layer applied" "$LOGDIR/$B-strata.log" || true; }
produced() { grep -c "layer produced" "$LOGDIR/$B-strata.log" || true; }

# tree_of NS: the listing of the image's top layer as unpacked in namespace NS.
tree_of() {
    local ns=$1 m=$R/mnt-$1
    mkdir -p "$m"
    # `ctr snapshots view` gives the view no gc.root label: a synchronous GC first, so that
    # no collection scheduled by earlier removals can take it before it is labelled.
    containerd_gc "$R/c.sock" "$ns" "gcwait-$ns"
    ctr_ -n "$ns" snapshots --snapshotter strata view "view-$ns" "$TOP" >/dev/null
    ctr_ -n "$ns" snapshots --snapshotter strata label "view-$ns" containerd.io/gc.root=differ-e2e >/dev/null
    ctr_ -n "$ns" snapshots --snapshotter strata mounts "$m" "view-$ns" | sh
    python3 "$HERE/listing.py" tree "$m" >"$R/tree-$ns"
    umount "$m"
    ctr_ -n "$ns" snapshots --snapshotter strata rm "view-$ns"
}

# change NS: prepares work-NS on the image and changes it in known ways through its mounts.
change() {
    local ns=$1 m=$R/work-$1
    mkdir -p "$m"
    ctr_ -n "$ns" snapshots --snapshotter strata prepare "work-$ns" "$TOP" >/dev/null
    ctr_ -n "$ns" snapshots --snapshotter strata mounts "$m" "work-$ns" | sh
    (
        cd "$m"
        echo new >data/new.txt
        echo appended >>data/layer3.txt
        rm data/hl-a data/extras/fifo
        rm -r data/sgid-dir
        mkdir -p data/newdir/sub && echo nested >data/newdir/sub/file
        ln data/new.txt data/new-hardlink
        ln -s ../keep.txt/inside data/newdir/link
        chmod 4711 data/suid-bin
        chown 55:66 data/owned.txt
        echo deeper >data/opaque/sub-new.txt 2>/dev/null || true
        setfattr -n user.changed -v yes data/new.txt 2>/dev/null || true
        touch -d @1700000500 data/new.txt data/new-hardlink data/layer3.txt data/newdir/sub/file
        # Directory times move with each change: pin them, so that the two snapshots,
        # changed seconds apart, hold the same tree.
        touch -h -d @1700000600 data data/extras data/newdir data/newdir/sub data/newdir/link \
            data/opaque data/opaque/sub-new.txt
    )
    umount "$m"
}

for B in "${BACKENDS[@]}"; do
    R=$T/$B
    mkdir -p "$R"
    serve=("$STRATA" serve --root "$R/strata" --address "$R/strata.sock" --backend "$B"
        --containerd-address "$R/c.sock")
    blobs=$R/containerd/io.containerd.content.v1.content/blobs
    if [ "$B" = native ]; then
        # Strata reads a blob from containerd's content directory when it can see it, and
        # streams it through containerd's Content API when it cannot (another mount
        # namespace): on native, containerd's blobs are hidden from Strata by an empty
        # tmpfs in a mount namespace of its own, so the streamed path is the one tested.
        mkdir -p "$blobs"
        unshare -m --propagation private sh -c 'mount -t tmpfs strata-hides-blobs "$0" && exec "$@"' \
            "$blobs" "${serve[@]}" >>"$LOGDIR/$B-strata.log" 2>&1 &
        read_path=false
    else
        "${serve[@]}" >>"$LOGDIR/$B-strata.log" 2>&1 &
        read_path=true
    fi
    STRATA_PID=$!
    wait_until 30 test -S "$R/strata.sock"

    start_containerd strata-diff walking
    c_apply_strata() {
        ctr_ -n strata images import --snapshotter strata "$T/img.tar" &&
            [ "$(applied)" = 5 ] || { echo "Strata applied $(applied) layers, expected 5"; return 1; }
    }
    check "import under [strata-diff, walking]: Strata applies all 5 layers" c_apply_strata

    c_read_path() {
        local streamed=$([ "$read_path" = true ] && echo false || echo true)
        grep -q "layer applied.*local=$read_path" "$LOGDIR/$B-strata.log" &&
            ! grep -q "layer applied.*local=$streamed" "$LOGDIR/$B-strata.log"
    }
    check "layers read with local=$read_path (from containerd's directory: true, streamed: false)" c_read_path

    start_containerd walking
    c_apply_walking() {
        ctr_ -n walking images import --snapshotter strata "$T/img.tar" &&
            [ "$(applied)" = 5 ] || { echo "Strata applied $(applied) layers under [walking]"; return 1; }
    }
    check "import under [walking]: containerd's applier does the work" c_apply_walking

    c_same_tree() {
        tree_of strata && tree_of walking &&
            diff -u "$R/tree-walking" "$R/tree-strata" &&
            [ "$(wc -l <"$R/tree-strata")" -gt 60 ] || { echo "$(wc -l <"$R/tree-strata") entries"; return 1; }
    }
    check "the unpacked trees list identically" c_same_tree

    c_changes_walking() { change walking && ctr_ -n walking snapshots --snapshotter strata diff "work-walking" >"$R/walking.layer"; }
    check "ctr snapshots diff under [walking]" c_changes_walking

    start_containerd strata-diff walking
    c_changes_strata() {
        local before
        before=$(produced)
        change strata && ctr_ -n strata snapshots --snapshotter strata diff "work-strata" >"$R/strata.layer" &&
            [ "$(produced)" = $((before + 1)) ] || { echo "Strata did not produce the layer"; return 1; }
    }
    check "ctr snapshots diff under [strata-diff, walking]: Strata produces the layer" c_changes_strata

    c_same_layer() {
        python3 "$HERE/listing.py" layer "$R/walking.layer" >"$R/layer-walking" &&
            python3 "$HERE/listing.py" layer "$R/strata.layer" >"$R/layer-strata" &&
            [ "$(wc -l <"$R/layer-strata")" -gt 10 ] &&
            diff -u "$R/layer-walking" "$R/layer-strata"
    }
    check "the two layers list identically" c_same_layer

    # A Diff between snapshots that are not one layer apart (the image's second layer
    # against the changed snapshot): Strata mounts both stacks where nobody else sees them
    # (overlay) or compares the two trees (native); the layer must list as walking's does.
    c_far_strata() {
        local before
        before=$(produced)
        ctr_ -n strata snapshots --snapshotter strata diff "${IDS[2]}" "work-strata" >"$R/strata-far.layer" &&
            [ "$(produced)" = $((before + 1)) ] || { echo "Strata did not produce the layer"; return 1; }
    }
    check "ctr snapshots diff across three layers under [strata-diff, walking]: Strata produces it" c_far_strata
    start_containerd walking
    c_far_same() {
        ctr_ -n walking snapshots --snapshotter strata diff "${IDS[2]}" "work-walking" >"$R/walking-far.layer" &&
            python3 "$HERE/listing.py" layer "$R/walking-far.layer" >"$R/far-walking" &&
            python3 "$HERE/listing.py" layer "$R/strata-far.layer" >"$R/far-strata" &&
            [ "$(wc -l <"$R/far-strata")" -gt 20 ] &&
            diff -u "$R/far-walking" "$R/far-strata"
    }
    check "the layers across three layers list identically" c_far_same
    start_containerd strata-diff walking

    c_run() {
        local out
        out=$(ctr_ -n strata run --snapshotter strata --rm localhost/differ:5 "r-$B" \
            sh -c 'cat /data/layer4.txt /data/keep.txt/inside; ls /data/extras; [ -e /data/deleteme.txt ] || echo whited-out') &&
            echo "$out" &&
            [ "$(tr '\n' ' ' <<<"$out")" = "layer4 inside a-rather-long-directory-name-0 big.bin capable fifo long-link loop9 null xattrs whited-out " ]
    }
    check "a container runs on the Strata-applied image" c_run

    c_truncated() {
        local out before
        before=$(ctr_ -n strata snapshots --snapshotter strata ls | wc -l)
        if out=$(ctr_ -n strata images import --snapshotter strata "$T/truncated.tar" 2>&1); then
            echo "a truncated layer unpacked: $out"
            return 1
        fi
        echo "$out"
        grep -q "corrupt" <<<"$out" &&
            [ "$(ctr_ -n strata snapshots --snapshotter strata ls | wc -l)" = "$before" ]
    }
    check "a truncated layer fails with 'corrupt' and leaves no snapshot" c_truncated

    c_digest() {
        local out before blob
        ctr_ -n strata images import --no-unpack "$T/plain.tar" >/dev/null &&
            blob=$(tar -tvf "$T/plain.tar" | sort -k3 -n | tail -n 1 | awk '{print $6}') &&
            blob=$R/containerd/io.containerd.content.v1.content/$blob &&
            python3 -c 'import sys; p = sys.argv[1]; d = bytearray(open(p, "rb").read()); d[len(d) // 2] ^= 0xff; open(p, "wb").write(d)' "$blob" || return 1
        before=$(ctr_ -n strata snapshots --snapshotter strata ls | wc -l)
        if out=$(ctr_ -n strata snapshots unpack --snapshotter strata "${PLAIN[0]}" 2>&1); then
            echo "a corrupted blob unpacked: $out"
            return 1
        fi
        echo "$out"
        grep -Eq "digest mismatch|corrupt" <<<"$out" &&
            [ "$(ctr_ -n strata snapshots --snapshotter strata ls | wc -l)" = "$before" ]
    }
    check "a blob that no longer matches its digest fails and leaves no snapshot" c_digest

    teardown
done

echo "differ e2e: $passed passed, $failed failed" >&3
[ "$failed" -eq 0 ]

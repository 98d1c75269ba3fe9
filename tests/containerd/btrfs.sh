#!/usr/bin/env bash
# End-to-end test of the btrfs backend under a real containerd: a disk limit per container.
#
#   tests/containerd/btrfs.sh [path-to-strata-binary]
#
# Default binary: $STRATA_BIN, else ${CARGO_TARGET_DIR:-/var/tmp/strata-target}/debug/strata.
# On a small loop-mounted btrfs it makes (scripts/lib/loopdisk.sh), a private Strata serves
# the btrfs backend with quotas on ([btrfs] quota = "simple", or "qgroups" with
# STRATA_E2E_BTRFS_QUOTA=qgroups) and [btrfs] default_max_size = 1 MiB; a private containerd
# (own root, state and sockets, CRI and the built-in snapshotters disabled) uses it as the
# proxy snapshotter `strata-btrfs`. Then:
#   - an image built offline (busybox: a 1.9 MiB first layer) is imported and unpacked:
#     extraction snapshots get no default limit, so the layer unpacks past the 1 MiB default;
#   - a container with the default limit runs `dd` past 1 MiB and gets "Disk quota exceeded";
#   - a neighbour whose snapshot carries the label containerd.io/snapshot/max-size = 64 MiB
#     (`ctr run --snapshotter-label`, which containerd passes on to Prepare) writes 8 MiB;
#     Strata lists the label, and btrfs shows the 64 MiB limit on the snapshot's qgroup;
#   - `ctr images rm` and containerd's GC leave Strata with no snapshot and the filesystem
#     with no subvolume (`btrfs subvolume list`), no qgroup still charged with bytes, and
#     `strata fsck` clean.
#
# The containerd is the one on PATH (Debian 12's 1.6), or with STRATA_E2E_CONTAINERD=1.7
# Debian 13's 1.7 (scripts/lib/containerd.sh, ensure_containerd17). Each check prints
# `PASS: <name>` or `FAIL: <name>`; the last line is `containerd btrfs e2e: N passed, M
# failed`; the exit status is non-zero on any failure. Everything started or mounted is torn
# down by a trap; logs are kept in ${STRATA_E2E_LOGDIR:-/var/tmp/strata-containerd-e2e}/btrfs
# (-1.7/btrfs under 1.7). Needs root (loop devices, mounts, containerd, runc); installs
# containerd, runc, busybox-static and btrfs-progs with apt-get when missing.
set -euo pipefail
exec 3>&1 4>&2
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
. "$REPO/scripts/lib/common.sh"
. "$REPO/scripts/lib/containerd.sh"
. "$REPO/scripts/lib/loopdisk.sh"
LOGDIR=${STRATA_E2E_LOGDIR:-/var/tmp/strata-containerd-e2e}

die() { echo "btrfs.sh: error: $*" >&2; exit 2; }
note() { echo "btrfs.sh: $*" >&2; }

case "${1:-}" in
  -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
esac
strata_arg=${1:-${STRATA_BIN:-${CARGO_TARGET_DIR:-/var/tmp/strata-target}/debug/strata}}
[ "$(id -u)" -eq 0 ] || die "must run as root: the loop btrfs, containerd, runc and the snapshot mounts need it (try: sudo $0 $*)"
[ -e "$strata_arg" ] || die "strata binary '$strata_arg' not found; build it: cargo build --workspace --bins"
STRATA=$(realpath -e -- "$strata_arg")
QUOTA=${STRATA_E2E_BTRFS_QUOTA:-simple}
case "$QUOTA" in simple|qgroups) ;; *) die "STRATA_E2E_BTRFS_QUOTA='$QUOTA': expected simple or qgroups" ;; esac

ensure_apt containerd runc busybox-static btrfs-progs || die "apt-get install failed"
case "${STRATA_E2E_CONTAINERD:-}" in
  "") ;;
  1.7)
    CTRD17=$(ensure_containerd17) || die "could not fetch containerd 1.7"
    PATH=$CTRD17:$PATH
    LOGDIR=$LOGDIR-1.7 ;;
  *) die "STRATA_E2E_CONTAINERD='$STRATA_E2E_CONTAINERD': expected 1.7 (or unset: the containerd on PATH)" ;;
esac
LOGDIR=$LOGDIR/btrfs
CTRD_VERSION=$(containerd_version) || die "containerd --version failed"
for c in containerd ctr containerd-shim-runc-v2 runc python3 btrfs mkfs.btrfs losetup setsid timeout; do
  command -v "$c" >/dev/null 2>&1 || die "'$c' not found"
done
note "containerd $CTRD_VERSION ($(command -v containerd)), quotas: $QUOTA"

DEFAULT_MAX=$((1 << 20))   # [btrfs] default_max_size
LABEL_MAX=$((64 << 20))    # the neighbour's containerd.io/snapshot/max-size
LABEL=containerd.io/snapshot/max-size

T=$(mktemp -d /tmp/strata-ctrd-btrfs.XXXXXX)
chmod 0711 "$T"
NS=strata-btrfs-e2e-$$
MNT=$T/btrfs        # the loop btrfs: Strata's root is $MNT/strata
SROOT=$MNT/strata SSOCK=$T/strata.sock CSOCK=$T/containerd.sock CSTATE=$T/containerd/state
SPID="" CPID=""
containerd_run_dirs_note
mkdir -p "$T/fifo" "$T/runc" "$T/mnt" "$LOGDIR"
rm -f "$LOGDIR"/*.log

NPASS=0 NFAIL=0
FAILED=()
pass() { NPASS=$((NPASS + 1)); echo "PASS: $1"; }
fail() {
  NFAIL=$((NFAIL + 1)); FAILED+=("$1"); echo "FAIL: $1"
  [ -z "${2:-}" ] || printf '%s\n' "$2" | head -n 25 | sed 's/^/    /'
}
# check NAME FUNCTION [ARGS...]: FUNCTION returns 0 for a pass; its output is shown on failure.
check() {
  local name=$1; shift
  local rc=0
  "$@" >"$T/check.out" 2>&1 </dev/null || rc=$?
  if [ "$rc" -eq 0 ]; then pass "$name"; else fail "$name" "$(cat "$T/check.out")"; fi
  return 0
}
expect_eq() { # expect_eq WHAT ACTUAL EXPECTED
  [ "$2" = "$3" ] && return 0
  printf '%s: got   [%s]\n%s: want  [%s]\n' "$1" "$2" "$1" "$3"
  return 1
}

ctr_() { timeout 60 ctr -a "$CSOCK" -n "$NS" "$@"; }
snap() { ctr_ snapshots --snapshotter strata-btrfs "$@"; }
strata_ls() { timeout 30 "$STRATA" ls --address "$SSOCK" --snapshotter btrfs "$@"; }
# Subvolumes under Strata's root (paths relative to the filesystem's top).
subvolumes() { btrfs subvolume list -o "$MNT" | awk '{print $NF}' | grep '^strata/' || true; }

teardown() {
  local rc=$?
  trap - EXIT INT TERM HUP
  set +e
  if [ -n "$CPID" ] && running "$CPID"; then containerd_clear "$CSOCK" "$NS"; fi
  kill_wait "$CPID" 10
  kill_wait "$SPID" 10
  containerd_reap "$T" "$NS" "$CSTATE"
  cp -f "$T"/*.log "$LOGDIR/" 2>/dev/null
  unmount_under "$T"
  loopdisk_release "$T"
  if [ -z "$(mounts_under "$T")" ]; then
    rm -rf "$T"
  else
    echo "btrfs.sh: warning: mounts still under $T; not removing it:" >&4
    mounts_under "$T" >&4
  fi
  containerd_run_dirs_rm "$NS"
  return "$rc"
}
trap teardown EXIT
trap 'echo "btrfs.sh: interrupted" >&4; exit 130' INT TERM HUP

# ------------------------------------------------------------------ setup --
loopdisk_make "$T/disk.img" "$MNT" 512M btrfs >/dev/null || die "cannot make the loop btrfs"
IMG=localhost/strata-btrfs-e2e:1
mapfile -t IDS < <(python3 "$SCRIPT_DIR/mkimage.py" "$(command -v busybox)" "$T/img.tar" "$IMG" 3)
[ ${#IDS[@]} -eq 4 ] || die "mkimage.py failed"
TOP=${IDS[3]}

cat >"$T/strata.toml" <<EOF
backend = "btrfs"
backends = ["btrfs"]

[btrfs]
quota = "$QUOTA"
default_max_size = $DEFAULT_MAX
EOF

start_strata() {
  NO_COLOR=1 RUST_LOG="${RUST_LOG:-info,strata_grpc=debug}" \
    setsid "$STRATA" serve --config "$T/strata.toml" --root "$SROOT" --address "$SSOCK" \
    </dev/null >>"$T/strata.log" 2>&1 &
  SPID=$!
  wait_until 20 alive_and "$SPID" strata_ls
}

start_containerd() {
  local f=$T/containerd.toml
  containerd_config "$f" "$T/containerd/root" "$CSTATE" "$CSOCK"
  containerd_proxy_plugin "$f" strata-btrfs snapshot "$SSOCK"
  containerd_start "$f" "$T/containerd.log" "$CSOCK" || return 1
  CPID=$CONTAINERD_PID
  containerd_plugin_ok "$CSOCK" "$NS" io.containerd.snapshotter.v1 strata-btrfs
}

GC_N=0
gc_now() { GC_N=$((GC_N + 1)); containerd_gc "$CSOCK" "$NS" "btrfs-e2e-gc-$GC_N"; }

# ----------------------------------------------------------------- checks --
c_quotas_on() {
  # As the daemon enabled them: strata doctor reads the quota status from the filesystem.
  local want="simple quotas" out
  [ "$QUOTA" = qgroups ] && want="full qgroup accounting"
  out=$("$STRATA" doctor --config "$T/strata.toml" --root "$SROOT" --address "$SSOCK" 2>&1) || true
  echo "$out"
  grep -E "^(OK|WARN) +btrfs quota +$want" <<<"$out" >/dev/null
}

c_import() {
  ctr_ images import --snapshotter strata-btrfs "$T/img.tar" || return 1
  expect_eq "top layer" "$(snap ls | awk -v k="$TOP" '$1 == k { print $NF }')" "Committed" || return 1
  # Each of the 3 layers is a subvolume; the first holds busybox (1.9 MiB > the default).
  expect_eq "subvolumes" "$(subvolumes | wc -l)" 3
}

EXEC_N=0
run_bg() { # run_bg NAME [ctr run options...]: a container sleeping on the image
  local name=$1; shift
  ctr_ run -d --null-io --snapshotter strata-btrfs --runc-root "$T/runc" --fifo-dir "$T/fifo" \
    "$@" "$IMG" "$name" sleep 3600 >/dev/null || return 1
  wait_until 10 task_running "$CSOCK" "$NS" "$name" || { ctr_ tasks ls; return 1; }
}
cexec() { # cexec CONTAINER SCRIPT
  EXEC_N=$((EXEC_N + 1))
  ctr_ tasks exec --exec-id "e$EXEC_N" --fifo-dir "$T/fifo" "$1" sh -c "$2"
}
# The subvolume of container NAME's snapshot, from the bind mount Strata returns.
subvolume_of() {
  snap mounts "$T/mnt/x" "$1" | awk '{ print $4 }'
}
# qgroup_limit PATH: the max exclusive bytes of PATH's subvolume ("none" when unlimited).
qgroup_limit() {
  btrfs qgroup show -e --raw -f "$1" | awk 'NR > 2 { print $4; exit }'
}

c_run_limited() {
  run_bg lim || return 1
  local src
  src=$(subvolume_of lim) || return 1
  expect_eq "qgroup limit of lim's subvolume ($src)" "$(qgroup_limit "$src")" "$DEFAULT_MAX"
}

c_limited_dd_fails() {
  local out rc=0
  # 4 MiB into a snapshot limited to 1 MiB; conv=fsync so nothing waits for writeback.
  out=$(cexec lim 'dd if=/dev/zero of=/big bs=64k count=64 conv=fsync 2>&1; echo "dd exit $?"') || rc=$?
  echo "$out"
  [ "$rc" -eq 0 ] || { echo "ctr tasks exec failed ($rc)"; return 1; }
  case "$out" in *"Disk quota exceeded"*) ;; *) echo "no 'Disk quota exceeded' from dd"; return 1 ;; esac
  case "$out" in *"dd exit 0"*) echo "dd succeeded"; return 1 ;; esac
  grep 'Disk quota exceeded' <<<"$out" | head -n 1 >"$T/dd-error"

}

c_limited_room_again() {
  # Deleting the file frees the room: a small write succeeds again.
  local out
  out=$(cexec lim 'rm -f /big && sync && echo small > /small && cat /small') || { echo "$out"; return 1; }
  expect_eq "output" "$out" "small"
}

c_run_neighbour() {
  run_bg big --snapshotter-label "$LABEL=$LABEL_MAX" || return 1
  local src
  src=$(subvolume_of big) || return 1
  expect_eq "qgroup limit of big's subvolume ($src)" "$(qgroup_limit "$src")" "$LABEL_MAX" || return 1
  # The label reached Strata's Prepare through containerd.
  strata_ls --json | python3 -c '
import json, sys
rows = json.load(sys.stdin)
rows = rows if isinstance(rows, list) else rows.get("snapshots", rows)
hits = [r for r in rows if r["name"].endswith("/big")]
assert hits, "no snapshot named .../big in strata"
labels = hits[0].get("labels") or {}
assert labels.get(sys.argv[1]) == sys.argv[2], labels
' "$LABEL" "$LABEL_MAX"
}

c_neighbour_dd_succeeds() {
  local out
  out=$(cexec big 'dd if=/dev/zero of=/big bs=64k count=128 conv=fsync 2>&1 && ls -l /big | awk "{print \$5}"') ||
    { echo "$out"; return 1; }
  echo "$out"
  case "$out" in *"Disk quota exceeded"*) return 1 ;; esac
  expect_eq "size written" "$(tail -n 1 <<<"$out")" $((8 << 20))
}

c_containers_removed() {
  local c
  for c in lim big; do
    ctr_ tasks kill -s KILL "$c" || return 1
    wait_until 10 task_stopped "$CSOCK" "$NS" "$c" || return 1
    ctr_ tasks rm "$c" >/dev/null && ctr_ containers rm "$c" || return 1
  done
}

strata_empty() { [ "$(strata_ls --json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')" = 0 ]; }

c_images_rm_gc() {
  ctr_ images rm --sync "$IMG" || return 1
  gc_now || return 1
  expect_eq "ctr snapshots ls" "$(snap ls | tail -n +2)" "" || return 1
  wait_until 15 strata_empty ||
    { echo "strata still holds:"; strata_ls; return 1; }
}

c_no_subvolume_left() {
  wait_until 15 bash -c "[ -z \"\$(btrfs subvolume list -o '$MNT' | grep ' strata/')\" ]" ||
    { echo "subvolumes left:"; btrfs subvolume list -o "$MNT"; return 1; }
  expect_eq "entries in $SROOT/btrfs/snapshots" "$(ls -A "$SROOT/btrfs/snapshots")" ""
}

c_no_qgroup_charged() {
  # Once btrfs has dropped the deleted subvolumes, no level-0 qgroup other than the
  # top level's may still be charged with bytes (stale qgroups at 0 are the kernel's).
  # (A transaction commit wakes btrfs's cleaner, which then drops them at once rather than
  # at the next periodic commit, up to 30 s away.)
  btrfs filesystem sync "$MNT" >/dev/null && timeout 120 btrfs subvolume sync "$MNT" >/dev/null || return 1
  local left
  left=$(btrfs qgroup show --raw "$MNT" | awk 'NR > 2 && $1 ~ /^0\// && $1 != "0/5" && ($2 != 0 || $3 != 0)')
  btrfs qgroup show --raw "$MNT"
  expect_eq "qgroups still charged" "$left" ""
}

c_stop_and_fsck() {
  local rc=0 out
  kill -TERM "$SPID"
  wait_until 15 stopped "$SPID" || { echo "strata did not stop"; return 1; }
  wait "$SPID" || rc=$?
  SPID=""
  expect_eq "strata exit status" "$rc" 0 || return 1
  out=$("$STRATA" fsck --config "$T/strata.toml" --root "$SROOT" 2>&1) || { echo "$out"; return 1; }
  echo "$out"
}

# ------------------------------------------------------------------- run --
t0=$SECONDS
if start_strata; then pass "strata serve --backend btrfs starts on a loop btrfs (quota = $QUOTA, default_max_size = 1 MiB)"; else
  fail "strata serve --backend btrfs starts" "$(tail -n 20 "$T/strata.log")"; exit 1; fi
if start_containerd; then pass "containerd $CTRD_VERSION loads the proxy snapshotter strata-btrfs"; else
  fail "containerd loads the proxy snapshotter strata-btrfs" "$(tail -n 20 "$T/containerd.log")"; exit 1; fi
check "btrfs quotas are on" c_quotas_on
check "ctr images import: 3 layers unpacked past the default limit (extraction snapshots have none)" c_import
check "ctr run: the container's snapshot gets the default 1 MiB qgroup limit" c_run_limited
check "container: dd past the default limit fails with 'Disk quota exceeded'" c_limited_dd_fails
[ ! -s "$T/dd-error" ] || note "the container's dd said: $(cat "$T/dd-error")"
check "container: after deleting the file, writes succeed again" c_limited_room_again
check "ctr run --snapshotter-label $LABEL=64MiB: label in strata, 64 MiB qgroup limit" c_run_neighbour
check "neighbour: dd of 8 MiB (past the default) succeeds" c_neighbour_dd_succeeds
check "containers killed and removed" c_containers_removed
check "ctr images rm + GC: strata holds no snapshot" c_images_rm_gc
check "no subvolume left under strata's root (btrfs subvolume list)" c_no_subvolume_left
check "no qgroup still charged once btrfs dropped the subvolumes" c_no_qgroup_charged
check "strata stops cleanly and strata fsck finds nothing" c_stop_and_fsck

echo
if [ "$NFAIL" -gt 0 ]; then
  echo "failed checks:"
  printf '  %s\n' "${FAILED[@]}"
fi
echo "containerd: $CTRD_VERSION ($(command -v containerd)), quotas: $QUOTA, $((SECONDS - t0))s"
echo "logs: $LOGDIR/{strata,containerd}.log"
echo "containerd btrfs e2e: $NPASS passed, $NFAIL failed"
[ "$NFAIL" -eq 0 ]

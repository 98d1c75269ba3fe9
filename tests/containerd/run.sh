#!/usr/bin/env bash
# End-to-end test: Strata as a proxy snapshotter of an unmodified containerd.
#
#   tests/containerd/run.sh [path-to-strata-binary] [overlay|native]...
#
# Default binary: $STRATA_BIN, else ${CARGO_TARGET_DIR:-/var/tmp/strata-target}/debug/strata.
# Default backends: overlay native. For each backend it starts a private Strata
# (`--backend <b>`) and a private containerd (own root, state, sockets and
# config in a temp dir, CRI and the built-in snapshotters disabled, proxy
# plugin `strata`), then checks the whole life of an image and its containers:
# import + unpack, containers, `ctr snapshots` commands and the calls that must
# be refused, Strata restarts (SIGTERM and kill -9) under a running containerd,
# and containerd's garbage collection down to empty snapshot directories.
#
# Each check prints `PASS: [<backend>] <name>` or `FAIL: [<backend>] <name>`; the
# last line is `containerd e2e: N passed, M failed`; the exit status is non-zero
# on any failure. Everything the test starts or mounts is torn down by a trap,
# also on failure or Ctrl-C. The logs of the last run (Strata's and containerd's,
# per backend) are kept in ${STRATA_E2E_LOGDIR:-/var/tmp/strata-containerd-e2e}.
#
# The containerd is the one on PATH (Debian 12's 1.6), or with
# STRATA_E2E_CONTAINERD=1.7 Debian 13's containerd 1.7, fetched once into a cache
# under /var/tmp without touching the system's apt sources (scripts/lib/containerd.sh,
# ensure_containerd17) and put first on PATH for this run only; its logs then go to
# ${STRATA_E2E_LOGDIR:-/var/tmp/strata-containerd-e2e}-1.7.
#
# Needs root. Installs containerd, runc, busybox-static, golang-go and
# golang-github-containerd-containerd-dev with apt-get when missing (the last two
# build tests/containerd/gopath/src/strataprobe, a client that asks Strata
# directly what it holds, offline in GOPATH mode). Shared helpers (processes,
# mounts, cgroups, containerd's configuration) come from scripts/lib/.
set -euo pipefail
# (Pipelines here never end in `grep -q`: with pipefail, grep quitting early
# makes the writer die of SIGPIPE and the pipeline fail.)

# fd 3: the real stdout, fd 4: the real stderr (checks redirect 1 and 2 while
# they run, and a trap may fire inside one).
exec 3>&1 4>&2
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
CONTRIB=$REPO/contrib
. "$REPO/scripts/lib/common.sh"
. "$REPO/scripts/lib/containerd.sh"
LOGDIR=${STRATA_E2E_LOGDIR:-/var/tmp/strata-containerd-e2e}

die() { echo "run.sh: error: $*" >&2; exit 2; }
note() { echo "run.sh: $*" >&2; }

case "${1:-}" in
  -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
esac

strata_arg=${1:-${STRATA_BIN:-${CARGO_TARGET_DIR:-/var/tmp/strata-target}/debug/strata}}
[ $# -gt 0 ] && shift
if [ $# -eq 0 ]; then BACKENDS=(overlay native); else BACKENDS=("$@"); fi
for b in "${BACKENDS[@]}"; do
  case "$b" in overlay|native) ;; *) die "unknown backend '$b' (expected overlay or native)" ;; esac
done

[ "$(id -u)" -eq 0 ] || die "must run as root: containerd, runc and the snapshot mounts need it (try: sudo $0 $*)"
[ -e "$strata_arg" ] || die "strata binary '$strata_arg' not found; build it: CARGO_TARGET_DIR=/var/tmp/strata-target cargo build --workspace --bins"
STRATA=$(realpath -e -- "$strata_arg")
[ -x "$STRATA" ] || die "'$STRATA' is not executable"

# ------------------------------------------------------------ prerequisites --
# (busybox-static: the image needs a static busybox)
ensure_apt containerd runc busybox-static golang-go golang-github-containerd-containerd-dev ||
  die "apt-get install failed"
case "${STRATA_E2E_CONTAINERD:-}" in
  "") ;;
  1.7)
    CTRD17=$(ensure_containerd17) || die "could not fetch containerd 1.7"
    PATH=$CTRD17:$PATH
    LOGDIR=$LOGDIR-1.7 ;;
  *) die "STRATA_E2E_CONTAINERD='$STRATA_E2E_CONTAINERD': expected 1.7 (or unset: the containerd on PATH)" ;;
esac
CTRD_VERSION=$(containerd_version) || die "containerd --version failed"
note "containerd $CTRD_VERSION ($(command -v containerd)), ctr $(command -v ctr), shim $(command -v containerd-shim-runc-v2)"
for c in containerd ctr containerd-shim-runc-v2 runc python3 mount umount setsid timeout; do
  command -v "$c" >/dev/null 2>&1 || die "'$c' not found"
done
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || BUSYBOX=$(command -v busybox)
# A static ELF has no PT_INTERP program header.
file_is_static() {
  python3 - "$1" <<'EOF'
import struct, sys
d = open(sys.argv[1], "rb").read()
assert d[:4] == b"\x7fELF" and d[4] == 2, "not a 64-bit ELF"
phoff, = struct.unpack_from("<Q", d, 0x20)
phentsize, phnum = struct.unpack_from("<HH", d, 0x36)
sys.exit(any(struct.unpack_from("<I", d, phoff + i * phentsize)[0] == 3 for i in range(phnum)))
EOF
}
file_is_static "$BUSYBOX" || die "$BUSYBOX is not static (install busybox-static)"

# ------------------------------------------------------------------- state --
T=$(mktemp -d /tmp/strata-ctrd-e2e.XXXXXX)
chmod 0711 "$T"
NS=strata-e2e-$$
containerd_run_dirs_note

NPASS=0 NFAIL=0
FAILED=()
B=""            # current backend
SPID="" CPID="" # strata, containerd
BD="" CSOCK="" SSOCK="" SROOT="" CSTATE=""
TORN_DOWN_FINAL=0

pass() { NPASS=$((NPASS + 1)); echo "PASS: [$B] $1"; }
fail() {
  NFAIL=$((NFAIL + 1)); FAILED+=("[$B] $1"); echo "FAIL: [$B] $1"
  [ -z "${2:-}" ] || printf '%s\n' "$2" | head -n 25 | sed 's/^/    /'
}
# check NAME FUNCTION [ARGS...]: FUNCTION (run in this shell, so that it can
# change the test's state) returns 0 for a pass; what it prints is shown only
# when it fails.
check() {
  local name=$1; shift
  local rc=0
  "$@" >"$T/check.out" 2>&1 </dev/null || rc=$?
  if [ "$rc" -eq 0 ]; then pass "$name"; else fail "$name" "$(cat "$T/check.out")"; fi
  return 0
}

ctr_() { timeout 60 ctr -a "$CSOCK" -n "$NS" "$@"; }
snap() { timeout 60 ctr -a "$CSOCK" -n "$NS" snapshots --snapshotter strata "$@"; }
probe() { timeout 30 "$PROBE" "$SSOCK" strata "$@"; }

# ---------------------------------------------------------------- teardown --
# Stops everything of the current backend's pass; idempotent.
teardown_pass() {
  [ -n "$BD" ] || return 0
  if [ -n "$CPID" ] && running "$CPID"; then containerd_clear "$CSOCK" "$NS"; fi
  kill_wait "$CPID" 10; CPID=""
  kill_wait "$SPID" 10; SPID=""
  # Whatever is left: container processes, shims and their sockets, mounts, cgroups.
  containerd_reap "$BD" "$NS" "$CSTATE"
  if [ -d "$BD" ]; then
    mkdir -p "$LOGDIR/$B"
    cp -f "$BD"/*.log "$LOGDIR/$B/" 2>/dev/null || true
  fi
}

teardown_all() {
  local rc=$?
  [ "$TORN_DOWN_FINAL" -eq 1 ] && return 0
  trap - EXIT INT TERM HUP
  set +e
  teardown_pass
  unmount_under "$T"
  if [ -z "$(mounts_under "$T")" ]; then
    rm -rf "$T"
  else
    echo "run.sh: warning: mounts still under $T; not removing it:" >&4
    mounts_under "$T" >&4
  fi
  # /run/containerd/{s,fifo,runc} are made by containerd, its shims and ctr
  # whatever the configuration says; remove those this test created, if empty.
  containerd_run_dirs_rm "$NS"
  TORN_DOWN_FINAL=1
  return "$rc"
}
trap teardown_all EXIT
on_signal() {
  echo "run.sh: interrupted; tearing down" >&4
  echo "containerd e2e: interrupted after $NPASS passed, $NFAIL failed" >&3
  exit 130
}
trap on_signal INT TERM HUP

# ---------------------------------------------------------- build helpers --
note "building strataprobe (offline, GOPATH mode)"
PROBE=$T/strataprobe
(
  go_offline "$SCRIPT_DIR/gopath" && go build -p 1 -o "$PROBE" strataprobe
) || die "building strataprobe failed"

IMG1=localhost/strata-e2e:3layers
IMG2=localhost/strata-e2e:4layers
mapfile -t IMG1_IDS < <(python3 "$SCRIPT_DIR/mkimage.py" "$BUSYBOX" "$T/img1.tar" "$IMG1" 3)
mapfile -t IMG2_IDS < <(python3 "$SCRIPT_DIR/mkimage.py" "$BUSYBOX" "$T/img2.tar" "$IMG2" 4)
DIGEST1=${IMG1_IDS[0]}
CH1=${IMG2_IDS[1]} CH2=${IMG2_IDS[2]} CH3=${IMG2_IDS[3]} CH4=${IMG2_IDS[4]}
[ "${IMG1_IDS[3]}" = "$CH3" ] || die "mkimage.py: the two images do not share their first 3 layers"

mkdir -p "$LOGDIR"
rm -f "$LOGDIR"/overlay/*.log "$LOGDIR"/native/*.log

# ------------------------------------------------------------------ daemons --
start_strata() {
  NO_COLOR=1 RUST_LOG="${RUST_LOG:-info,strata_grpc=debug}" \
    setsid "$STRATA" serve --config "$CONTRIB/config.toml" --root "$SROOT" --address "$SSOCK" --backend "$B" \
    </dev/null >>"$BD/strata.log" 2>&1 &
  SPID=$!
  wait_until 20 alive_and "$SPID" probe walk
}

start_containerd() {
  local f=$BD/containerd.toml
  containerd_config "$f" "$BD/containerd/root" "$CSTATE" "$CSOCK"
  containerd_proxy_plugin "$f" strata snapshot "$SSOCK"
  # The same socket under the other backend's name.
  containerd_proxy_plugin "$f" "strata-$OTHER" snapshot "$SSOCK"
  containerd_start "$f" "$BD/containerd.log" "$CSOCK" || return 1
  CPID=$CONTAINERD_PID
}

# ------------------------------------------------------------------ checks --
# Most check functions print what they saw and return non-zero on a mismatch.

expect_eq() { # expect_eq WHAT ACTUAL EXPECTED
  [ "$2" = "$3" ] && return 0
  printf '%s: got   [%s]\n%s: want  [%s]\n' "$1" "$2" "$1" "$3"
  return 1
}

# refused WANT_TEXT COMMAND...: the command fails and its stderr names the error class.
refused() {
  local want=$1; shift
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  if [ "$rc" -eq 0 ]; then echo "succeeded but should have been refused: $*"; echo "$out"; return 1; fi
  case "$out" in *"$want"*) return 0 ;; esac
  echo "refused, but not with '$want': $out"; return 1
}

snap_dirs() { # number of snapshot directories of backend $1
  local d=$SROOT/$1/snapshots
  [ -d "$d" ] || { echo 0; return; }
  find "$d" -mindepth 1 -maxdepth 1 | wc -l
}

# ls_entry KEY -> "<kind> <parent|->" from `ctr snapshots ls` (empty if absent)
ls_entry() { snap ls | awk -v k="$1" '$1 == k { if (NF == 3) print $3, $2; else print $2, "-" }'; }

probe_entry() { # probe_entry KEY -> "<kind> <parent-key-or-->" for the snapshot whose strata name ends in /KEY
  probe walk | awk -v k="$1" '{ n = $2; sub(/^[^\/]*\/[0-9]+\//, "", n); if (n == k) { p = $3; sub(/^[^\/]*\/[0-9]+\//, "", p); print $1, p } }'
}

c_daemons_up() {
  running "$SPID" && running "$CPID" || { echo "strata or containerd is not running"; return 1; }
  containerd_plugin_ok "$CSOCK" "$NS" io.containerd.snapshotter.v1 strata || { ctr_ plugins ls; return 1; }
}

c_no_unpack() {
  ctr_ images import --no-unpack "$T/img1.tar" || return 1
  local n
  n=$(snap ls | tail -n +2 | wc -l)
  expect_eq "snapshots in containerd after --no-unpack" "$n" 0 || return 1
  expect_eq "snapshots in strata" "$(probe walk | wc -l)" 0
}

c_unpack_group_flag_ignored() {
  # ctr's `snapshots unpack` (1.6 and 1.7) has its own --snapshotter flag and
  # reads only that one: `ctr snapshots --snapshotter strata unpack` uses the
  # default snapshotter (overlayfs, disabled here, so it fails loudly instead of
  # silently unpacking into overlayfs).
  refused "snapshotter not loaded: overlayfs" snap unpack "$DIGEST1" &&
    expect_eq "snapshots in strata" "$(probe walk | wc -l)" 0
}

c_snapshots_unpack() {
  ctr_ snapshots unpack --snapshotter strata "$DIGEST1" || return 1
  expect_eq "layer 1" "$(ls_entry "$CH1")" "Committed -" &&
    expect_eq "layer 2" "$(ls_entry "$CH2")" "Committed $CH1" &&
    expect_eq "layer 3" "$(ls_entry "$CH3")" "Committed $CH2" &&
    expect_eq "number of snapshots" "$(snap ls | tail -n +2 | wc -l)" 3
}

c_strata_holds_layers() {
  expect_eq "strata: layer 1" "$(probe_entry "$CH1")" "Committed -" &&
    expect_eq "strata: layer 2" "$(probe_entry "$CH2")" "Committed $CH1" &&
    expect_eq "strata: layer 3" "$(probe_entry "$CH3")" "Committed $CH2" &&
    expect_eq "strata: snapshots" "$(probe walk | wc -l)" 3 &&
    expect_eq "directories in $SROOT/$B/snapshots" "$(snap_dirs "$B")" 3
}

c_layout_on_disk() {
  local base=$SROOT/$B/snapshots f
  if [ "$B" = overlay ]; then
    # Layer 2 alone holds layer2.txt; its whiteout is an overlayfs 0/0 char device,
    # its opaque directory carries trusted.overlay.opaque=y.
    f=$(ls -d "$base"/*/fs/data/layer2.txt 2>/dev/null) || true
    expect_eq "directories holding data/layer2.txt" "$(printf '%s\n' "$f" | grep -c . || true)" 1 || return 1
    local l2=${f%/data/layer2.txt}
    expect_eq "whiteout" "$(stat -c '%F %t:%T' "$l2/data/deleteme.txt" 2>&1)" "character special file 0:0" &&
      expect_eq "opaque xattr" "$(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "trusted.overlay.opaque").decode())' "$l2/data/opaque" 2>&1)" "y"
  else
    # Native: every snapshot is a full tree; the top one has the whiteouts applied.
    f=$(ls -d "$base"/*/fs/data/layer3.txt "$base"/*/data/layer3.txt 2>/dev/null | head -n 1) || true
    [ -n "$f" ] || { echo "no snapshot directory holds data/layer3.txt"; ls -R "$base" | head -n 30; return 1; }
    local top=${f%/data/layer3.txt}
    [ ! -e "$top/data/deleteme.txt" ] && [ ! -e "$top/data/gone-dir" ] && [ ! -e "$top/data/opaque/old1.txt" ] &&
      [ -e "$top/data/keep.txt" ] || { ls -la "$top/data" "$top/data/opaque"; return 1; }
  fi
}

c_import_unpack() {
  ctr_ images import --snapshotter strata "$T/img2.tar" || return 1
  expect_eq "layer 4" "$(ls_entry "$CH4")" "Committed $CH3" &&
    expect_eq "snapshots" "$(snap ls | tail -n +2 | wc -l)" 4 &&
    expect_eq "strata: layer 4" "$(probe_entry "$CH4")" "Committed $CH3" &&
    expect_eq "directories" "$(snap_dirs "$B")" 4 &&
    ctr_ images ls -q | grep -x "$IMG1" >/dev/null && ctr_ images ls -q | grep -x "$IMG2" >/dev/null
}

EXEC_N=0
cexec() { # cexec CONTAINER SCRIPT
  EXEC_N=$((EXEC_N + 1))
  ctr_ tasks exec --exec-id "e$EXEC_N" --fifo-dir "$BD/fifo" "$1" sh -c "$2"
}

c_run_container() {
  ctr_ run -d --null-io --snapshotter strata --runc-root "$BD/runc" --fifo-dir "$BD/fifo" \
    "$IMG2" c1 sleep 3600 >/dev/null || return 1
  wait_until 10 task_running "$CSOCK" "$NS" c1 ||
    { ctr_ tasks ls; return 1; }
  expect_eq "c1 in ctr snapshots ls" "$(ls_entry c1)" "Active $CH4" &&
    expect_eq "c1 in strata" "$(probe_entry c1)" "Active $CH4"
}

c_rootfs_from_strata() {
  local mi
  mi=$(awk -v m="$CSTATE/io.containerd.runtime.v2.task/$NS/c1/rootfs" '$5 == m' /proc/self/mountinfo)
  [ -n "$mi" ] || { echo "c1's rootfs is not mounted"; return 1; }
  case "$B:$mi" in
    overlay:*" - overlay overlay "*"upperdir=$SROOT/overlay/snapshots/"*) return 0 ;;
    native:*) # a bind mount shows its source as its root (4th field) within the filesystem
      local root
      root=$(awk '{print $4}' <<<"$mi")
      case "$root" in */native/snapshots/*) return 0 ;; esac ;;
  esac
  echo "unexpected rootfs mount: $mi"; return 1
}

# Stats inside c1, filled by c_inspect: STAT[path]="uid:gid mode nlink inode type"
declare -A STAT=()
c_inspect() {
  local out line p
  out=$(cexec c1 'cd /data && stat -c "%n|%u:%g %a %h %i %F" keep.txt modify.txt hl-a hl-b hl2-a hl2-b \
      owned.txt suid-bin private private/secret sgid-dir chowned.txt cow.txt /tmp /bin/busybox link-rel 2>&1') || { echo "$out"; return 1; }
  STAT=()
  while IFS= read -r line; do p=${line%%|*}; STAT[$p]=${line#*|}; done <<<"$out"
  [ "${#STAT[@]}" -eq 16 ] || { echo "$out"; return 1; }
}

c_whiteouts() {
  local out
  out=$(cexec c1 'cd /data; for f in deleteme.txt gone-dir gone-dir/a opaque/old1.txt opaque/sub; do [ -e $f ] && echo "present: $f"; done; echo "opaque: $(ls -A opaque | tr "\n" " ")"') || { echo "$out"; return 1; }
  expect_eq "inside c1" "$out" "opaque: new.txt "
}

c_lower_reads() {
  local out
  out=$(cexec c1 'cd /data; cat keep.txt modify.txt layer2.txt layer3.txt layer4.txt opaque/new.txt') || { echo "$out"; return 1; }
  expect_eq "contents" "$(tr '\n' '|' <<<"$out")" "lower keep|layer3|layer2|layer3|layer4|new in layer 2|"
}

c_symlinks() {
  local out
  out=$(cexec c1 'cd /data; for l in link-rel link-abs link-dir; do readlink $l; done; cat link-rel link-abs; ls link-dir/') || { echo "$out"; return 1; }
  expect_eq "symlinks" "$(tr '\n' '|' <<<"$out")" "keep.txt|/data/keep.txt|private|lower keep|lower keep|secret|"
}

field() { awk -v i="$2" '{print $i}' <<<"${STAT[$1]:-}"; }

c_hardlinks() {
  [ -n "$(field hl-a 4)" ] || { echo "no stat of hl-a"; return 1; }
  expect_eq "hl-a/hl-b inode (layer 1)" "$(field hl-b 4)" "$(field hl-a 4)" &&
    expect_eq "hl-a nlink" "$(field hl-a 3)" 2 &&
    expect_eq "hl2-a/hl2-b inode (layer 2)" "$(field hl2-b 4)" "$(field hl2-a 4)" &&
    expect_eq "hl2-a nlink" "$(field hl2-a 3)" 2 &&
    expect_eq "hl2-b owner+mode" "$(field hl2-b 1) $(field hl2-b 2)" "42:43 600" || return 1
  [ "$(field hl-a 4)" != "$(field keep.txt 4)" ] || { echo "hl-a shares keep.txt's inode"; return 1; }
}

c_owners_modes() {
  local p want got bad=0
  local -A WANT=(
    [owned.txt]="1234:5678 640" [suid-bin]="0:0 4755" [private]="1000:1000 700"
    [private/secret]="1000:1000 600" [sgid-dir]="0:4321 2775" [chowned.txt]="2000:2001 604"
    [cow.txt]="1234:5678 640" [/tmp]="0:0 1777" [/bin/busybox]="0:0 755" [keep.txt]="0:0 644"
  )
  for p in "${!WANT[@]}"; do
    got="$(field "$p" 1) $(field "$p" 2)"
    [ "$got" = "${WANT[$p]}" ] || { echo "$p: got $got, want ${WANT[$p]}"; bad=1; }
  done
  return "$bad"
}

c_writes() {
  local out
  out=$(cexec c1 'set -e; cd /data
    echo fresh > new.txt; mkdir -p newdir/sub; echo deep > newdir/sub/f
    echo appended >> keep.txt
    echo changed >> cow.txt
    echo replaced > modify.txt
    rm rmme.txt
    rm -r private
    dd if=/dev/zero of=big.bin bs=1024 count=512 2>/dev/null
    sync
    cat new.txt newdir/sub/f keep.txt modify.txt; stat -c "%u:%g %a" cow.txt
    [ ! -e rmme.txt ] && [ ! -e private ] && echo deleted') || { echo "$out"; return 1; }
  expect_eq "after writing" "$(tr '\n' '|' <<<"$out")" "fresh|deep|lower keep|appended|replaced|1234:5678 640|deleted|"
}

c_writes_persist() {
  local out
  out=$(cexec c1 'cd /data; cat new.txt newdir/sub/f keep.txt cow.txt modify.txt; ls rmme.txt private 2>&1 >/dev/null | wc -l; wc -c < big.bin') || { echo "$out"; return 1; }
  expect_eq "second exec" "$(tr '\n' '|' <<<"$out" | tr -s ' ')" "fresh|deep|lower keep|appended|copy me up|changed|replaced|2|524288|"
}

c_usage_active() {
  local size
  size=$(snap usage -b c1 | awk 'NR == 2 {print $2}')
  [ -n "$size" ] && [ "$size" -ge 524288 ] || { snap usage -b c1; echo "want >= 524288 bytes"; return 1; }
}

MNT=""
# gc_now: a synchronous containerd GC (deleting a lease with --sync triggers one).
GC_N=0
gc_now() {
  GC_N=$((GC_N + 1))
  containerd_gc "$CSOCK" "$NS" "e2e-gc-$GC_N"
}
# view_pinned KEY PARENT: `ctr snapshots view` gives the view no gc.root label, so the
# next GC would collect it. Run a GC first (it resets containerd's deletion count,
# so no other GC is due), then make the view and label it.
view_pinned() {
  gc_now && snap view "$1" "$2" >/dev/null && snap label "$1" containerd.io/gc.root=e2e >/dev/null
}
# mount_printed LINE: runs the `mount -t TYPE SRC TARGET -o OPTS` line ctr prints.
mount_printed() {
  local _m _t type src tgt _o opts
  read -r _m _t type src tgt _o opts <<<"$1"
  [ "$_m $_t $_o" = "mount -t -o" ] || { echo "cannot parse: $1"; return 1; }
  mkdir -p "$tgt"
  if [ "$type" = bind ]; then mount -o "$opts" "$src" "$tgt"; else mount -t "$type" -o "$opts" "$src" "$tgt"; fi
}

c_prepare() {
  snap prepare work1 "$CH4" || return 1
  expect_eq "ls" "$(ls_entry work1)" "Active $CH4" && expect_eq "strata" "$(probe_entry work1)" "Active $CH4"
}

c_mounts_write() {
  local line
  MNT=$BD/mnt/work1
  line=$(snap mounts "$MNT" work1) || return 1
  mount_printed "$line" || return 1
  echo api > "$MNT/data/api.txt" && rm "$MNT/data/keep.txt" &&
    dd if=/dev/zero of="$MNT/data/api.bin" bs=1024 count=64 2>/dev/null &&
    [ "$(cat "$MNT/data/layer4.txt")" = layer4 ] || { umount "$MNT"; return 1; }
  sync
  umount "$MNT"
}

c_commit() {
  snap commit snap1 work1 || return 1
  expect_eq "ls snap1" "$(ls_entry snap1)" "Committed $CH4" &&
    expect_eq "ls work1" "$(ls_entry work1)" "" &&
    expect_eq "strata snap1" "$(probe_entry snap1)" "Committed $CH4" &&
    expect_eq "strata work1" "$(probe_entry work1)" ""
}

c_info() {
  local out
  out=$(snap info snap1) || return 1
  INFO=$out python3 - "$CH4" <<'EOF' || { echo "$out"; return 1; }
import json, os, sys
i = json.loads(os.environ["INFO"])
assert i["Kind"] == "Committed", i
assert i["Name"] == "snap1", i
assert i["Parent"] == sys.argv[1], i
assert "containerd.io/gc.root" in i.get("Labels", {}), i
EOF
}

c_view() {
  local line
  view_pinned view1 snap1 || return 1
  expect_eq "ls view1" "$(ls_entry view1)" "View snap1" && expect_eq "strata view1" "$(probe_entry view1)" "View snap1" || return 1
  MNT=$BD/mnt/view1
  line=$(snap mounts "$MNT" view1) || return 1
  mount_printed "$line" || return 1
  local ok=0
  { [ "$(cat "$MNT/data/api.txt")" = api ] && [ ! -e "$MNT/data/keep.txt" ] && [ "$(stat -c %s "$MNT/data/api.bin")" = 65536 ]; } ||
    { echo "view content wrong:"; ls -la "$MNT/data"; ok=1; }
  if touch "$MNT/data/x" 2>/dev/null; then echo "view is writable"; ok=1; fi
  umount "$MNT"
  return "$ok"
}

c_image_unchanged() {
  local line
  view_pinned imgview "$CH4" || return 1
  MNT=$BD/mnt/imgview
  line=$(snap mounts "$MNT" imgview) || return 1
  mount_printed "$line" || return 1
  local out
  out=$(cat "$MNT/data/keep.txt" "$MNT/data/rmme.txt" "$MNT/data/modify.txt" 2>&1; ls "$MNT/data/private"; [ -e "$MNT/data/new.txt" ] && echo "new.txt leaked")
  umount "$MNT"
  expect_eq "image top layer" "$(tr '\n' '|' <<<"$out")" "lower keep|remove me in the container|layer3|secret|"
}

c_label() {
  local out
  out=$(snap label snap1 containerd.io/snapshot/e2e=hello e2e.test/foo=bar) || return 1
  case "$out" in *containerd.io/snapshot/e2e=hello*e2e.test/foo=bar*|*e2e.test/foo=bar*containerd.io/snapshot/e2e=hello*) ;; *) echo "label output: $out"; return 1 ;; esac
  out=$(snap info snap1)
  grep -q '"containerd.io/snapshot/e2e": "hello"' <<<"$out" && grep -q '"e2e.test/foo": "bar"' <<<"$out" || { echo "$out"; return 1; }
  # containerd passes only containerd.io/snapshot/* labels to the snapshotter.
  out=$(probe stat "$(probe walk | awk '$2 ~ /\/snap1$/ {print $2}')")
  grep -q 'containerd.io/snapshot/e2e=hello' <<<"$out" || { echo "strata: $out"; return 1; }
  ! grep -q 'e2e.test/foo' <<<"$out" || { echo "strata got a non-inherited label: $out"; return 1; }
}

c_label_remove() {
  snap label snap1 e2e.test/foo= containerd.io/snapshot/e2e= >/dev/null || return 1
  local out
  out=$(snap info snap1)
  ! grep -q 'e2e.test/foo\|containerd.io/snapshot/e2e' <<<"$out" || { echo "$out"; return 1; }
  out=$(probe walk | grep '/snap1 ')
  ! grep -q 'containerd.io/snapshot/e2e' <<<"$out" || { echo "strata: $out"; return 1; }
  # Set them again, for the restarts.
  snap label snap1 containerd.io/snapshot/e2e=persist e2e.test/foo=kept >/dev/null
}

c_usage() {
  local size inodes
  read -r size inodes < <(snap usage -b snap1 | awk 'NR == 2 {print $2, $3}')
  [ -n "$size" ] && [ "$size" -ge 65536 ] && [ "$inodes" -ge 2 ] || { snap usage -b snap1; return 1; }
  # `usage` without a key walks every snapshot.
  local all
  all=$(snap usage -b | tail -n +2 | awk '{print $1}' | sort | tr '\n' ' ')
  for k in "$CH1" "$CH2" "$CH3" "$CH4" c1 snap1 view1 imgview; do
    grep -qw -- "$k" <<<"$all" || { echo "usage lacks $k: $all"; return 1; }
  done
}

c_ls_tree() {
  local tree
  tree=$(snap tree) || return 1
  # Layer 4 nests under layer 3 ... under layer 1; c1, snap1, imgview under
  # layer 4; view1 under snap1 (ctr prints a child as "<indent>\_ <name>").
  TREE=$tree python3 - "$CH1" "$CH2" "$CH3" "$CH4" <<'EOF' || { echo "$tree"; return 1; }
import os, sys
ch = sys.argv[1:]
depth = {}
for line in os.environ["TREE"].splitlines():
    name = line.split()[-1]
    depth[name] = line.index(name)
assert depth[ch[0]] < depth[ch[1]] < depth[ch[2]] < depth[ch[3]], depth
for k in ("c1", "snap1", "imgview"):
    assert depth[k] > depth[ch[3]], (k, depth)
assert depth["view1"] > depth["snap1"], depth
EOF
  expect_eq "ls count" "$(snap ls | tail -n +2 | wc -l)" 8
}

c_rm_gc() {
  snap prepare work2 snap1 >/dev/null && view_pinned view2 snap1 || return 1
  local n_before
  n_before=$(snap_dirs "$B")
  snap rm view2 work2 || return 1
  expect_eq "ls after rm" "$(ls_entry work2)$(ls_entry view2)" "" || return 1
  # `ctr snapshots rm` only drops containerd's record; its GC (scheduled by the
  # deletion) then calls Remove and Cleanup on strata.
  wait_until 15 bash -c "[ -z \"\$('$PROBE' '$SSOCK' strata walk | grep -E '/(work2|view2) ')\" ]" ||
    { echo "strata still holds them:"; probe walk; return 1; }
  wait_until 15 bash -c "[ \$(ls '$SROOT/$B/snapshots' | wc -l) -eq $((n_before - 2)) ]" ||
    { echo "directories: before $n_before, now $(snap_dirs "$B")"; return 1; }
}

c_gc_unreferenced_view() {
  # A view made by `ctr snapshots view` has no gc.root label and no lease: the next
  # GC collects it. Force one with a lease deleted --sync.
  # Its parent is an image layer, not snap1: containerd 1.6's GC deletes a
  # snapshot's record without deleting it from its parent's "children" bucket
  # (metadata/gc.go remove()), so `ctr snapshots rm <parent>` would then fail
  # forever with "cannot remove snapshot with child". Image layers are removed
  # by the GC itself, which does not look at that bucket.
  gc_now && snap view orphan-view "$CH4" >/dev/null || return 1
  [ -n "$(probe_entry orphan-view)" ] || { echo "not in strata"; return 1; }
  gc_now || return 1
  wait_until 10 bash -c "[ -z \"\$('$PROBE' '$SSOCK' strata walk | grep '/orphan-view ')\" ]" || { probe walk; return 1; }
  expect_eq "ls" "$(ls_entry orphan-view)" ""
}

# Captures what must survive a restart.
STATE_LS="" STATE_PROBE="" STATE_USAGE="" STATE_INFO=""
capture_state() {
  gc_now >/dev/null 2>&1 || true # nothing of an earlier rm still on its way to strata
  STATE_LS=$(snap ls | sort)
  STATE_PROBE=$(probe walk)
  STATE_USAGE=$(snap usage -b | sort)
  STATE_INFO=$(snap info snap1 | grep -v '"Updated"')
}

c_sigterm() {
  local rc=0 sock_gone
  kill -TERM "$SPID"
  wait_until 15 stopped "$SPID" || { echo "strata did not stop within 15 s"; return 1; }
  wait "$SPID" || rc=$?
  SPID=""
  sock_gone=yes; [ -e "$SSOCK" ] && sock_gone=no
  expect_eq "exit status" "$rc" 0 && expect_eq "socket removed" "$sock_gone" yes
}

c_down_unavailable() {
  refused "unavailable" snap ls || return 1
  ctr_ version >/dev/null || { echo "containerd does not answer"; return 1; }
  ctr_ images ls -q | grep -x "$IMG2" >/dev/null || { echo "containerd lost its images"; return 1; }
}

RECONNECT_S=""
c_restart() {
  local t0=$SECONDS
  start_strata || { echo "strata did not come back"; tail -n 5 "$BD/strata.log"; return 1; }
  wait_until 20 snap ls || { echo "containerd never reached the restarted strata"; snap ls; return 1; }
  RECONNECT_S=$((SECONDS - t0))
}

c_same_state() {
  expect_eq "ctr snapshots ls" "$(snap ls | sort)" "$STATE_LS" &&
    expect_eq "strata walk (kinds, parents, labels)" "$(probe walk)" "$STATE_PROBE" &&
    expect_eq "labels (ctr snapshots info)" "$(snap info snap1 | grep -v '"Updated"')" "$STATE_INFO" &&
    expect_eq "usage" "$(snap usage -b | sort)" "$STATE_USAGE" &&
    grep -q 'containerd.io/snapshot/e2e=persist' <<<"$(probe walk | grep '/snap1 ')" ||
    { echo "strata lost snap1's label"; return 1; }
}

c_exec_after_restart() {
  local out
  out=$(cexec c1 "cat /data/new.txt /data/keep.txt; echo after-$1 >> /data/new.txt; tail -n 1 /data/new.txt") || { echo "$out"; return 1; }
  case "$out" in "fresh"*"appended"*"after-$1") ;; *) echo "$out"; return 1 ;; esac
}

RUN_N=0
c_new_container() {
  RUN_N=$((RUN_N + 1))
  local out
  out=$(ctr_ run --rm --snapshotter strata --runc-root "$BD/runc" --fifo-dir "$BD/fifo" \
    "$IMG2" "r$RUN_N" sh -c 'cat /data/layer4.txt; echo x > /data/w && cat /data/w; [ -e /data/new.txt ] || echo clean') ||
    { echo "$out"; return 1; }
  expect_eq "output" "$(tr '\n' '|' <<<"$out")" "layer4|x|clean|"
}

c_api_after_restart() {
  snap prepare "after-$1" snap1 >/dev/null && snap commit "after-$1-c" "after-$1" &&
    expect_eq "strata" "$(probe_entry "after-$1-c")" "Committed snap1" &&
    snap rm "after-$1-c" && gc_now && expect_eq "strata after rm + GC" "$(probe_entry "after-$1-c")" ""
}

c_sigkill() {
  kill -KILL "$SPID"
  wait "$SPID" 2>/dev/null || true
  SPID=""
  [ -S "$SSOCK" ] || { echo "expected a stale socket file after kill -9"; return 1; }
  refused "unavailable" snap ls
}

c_remove_container() {
  ctr_ tasks kill -s KILL c1 || return 1
  wait_until 10 task_stopped "$CSOCK" "$NS" c1 || return 1
  ctr_ tasks rm c1 >/dev/null && ctr_ containers rm c1 || return 1
  expect_eq "c1 in ls" "$(ls_entry c1)" ""
}

log_count() { grep -c "op=\"$1\"" "$BD/strata.log" || true; }

REMOVES_BEFORE=0 CLEANUPS_BEFORE=0
c_final_gc() {
  local out
  gc_now || return 1
  REMOVES_BEFORE=$(log_count remove) CLEANUPS_BEFORE=$(log_count cleanup)
  snap rm view1 imgview || return 1
  snap rm snap1 || { snap ls; return 1; }
  out=$(ctr_ images rm --sync "$IMG1" "$IMG2") || { echo "$out"; return 1; }
  expect_eq "ctr snapshots ls" "$(snap ls | tail -n +2)" "" || return 1
  wait_until 15 bash -c "[ -z \"\$('$PROBE' '$SSOCK' strata walk)\" ]" || { echo "strata still holds:"; probe walk; return 1; }
}

c_dirs_empty() {
  wait_until 15 bash -c "[ -z \"\$(ls -A '$SROOT/$B/snapshots')\" ]" ||
    { echo "left in $SROOT/$B/snapshots:"; ls -la "$SROOT/$B/snapshots"; return 1; }
  # Strata deletes directories at Cleanup, so the GC that removed the image's
  # snapshots (4 layers, snap1, view1, imgview) also called Cleanup.
  local removes cleanups
  removes=$(( $(log_count remove) - REMOVES_BEFORE ))
  cleanups=$(( $(log_count cleanup) - CLEANUPS_BEFORE ))
  echo "strata log, final GC: $removes Remove, $cleanups Cleanup calls"
  [ "$removes" -ge 7 ] && [ "$cleanups" -ge 1 ]
}

c_content_gone() {
  expect_eq "ctr content ls" "$(ctr_ content ls -q)" "" &&
    expect_eq "ctr images ls" "$(ctr_ images ls -q)" ""
}

c_named_plugin() {
  # A proxy plugin named strata-<backend> on the same socket reaches that backend.
  local other=(timeout 60 ctr -a "$CSOCK" -n "$NS" snapshots --snapshotter "strata-$OTHER") line
  "${other[@]}" prepare other1 >/dev/null || return 1
  expect_eq "in $OTHER (strata)" "$(timeout 30 "$PROBE" "$SSOCK" "$OTHER" walk | awk '{print $1}')" "Active" &&
    expect_eq "directories in $OTHER/snapshots" "$(snap_dirs "$OTHER")" 1 &&
    expect_eq "listed by plugin strata" "$(ls_entry other1)" "" || return 1
  MNT=$BD/mnt/other1
  line=$("${other[@]}" mounts "$MNT" other1) || return 1
  mount_printed "$line" || return 1
  echo x >"$MNT/f" && umount "$MNT" || { umount "$MNT"; return 1; }
  "${other[@]}" rm other1 && gc_now || return 1
  expect_eq "in $OTHER after rm + GC" "$(timeout 30 "$PROBE" "$SSOCK" "$OTHER" walk)" "" &&
    expect_eq "directories in $OTHER/snapshots after GC" "$(snap_dirs "$OTHER")" 0
}

c_other_backend_empty() {
  expect_eq "directories in $OTHER/snapshots" "$(snap_dirs "$OTHER")" 0 &&
    expect_eq "snapshots in $OTHER" "$(timeout 30 "$PROBE" "$SSOCK" "$OTHER" walk | wc -l)" 0
}

c_containerd_gc_logged() {
  grep -q 'snapshotter=strata' "$BD/containerd.log" && grep -q 'removed snapshot' "$BD/containerd.log" ||
    { echo "containerd's log shows no GC removal through strata"; return 1; }
}

c_stop_strata() {
  local rc=0
  kill -TERM "$SPID"
  wait_until 15 stopped "$SPID" || { echo "strata did not stop"; return 1; }
  wait "$SPID" || rc=$?
  SPID=""
  expect_eq "exit status" "$rc" 0 && [ ! -e "$SSOCK" ]
}

# -------------------------------------------------------------------- pass --
run_pass() {
  B=$1
  OTHER=native
  [ "$B" = native ] && OTHER=overlay
  BD=$T/$B
  mkdir -p "$BD/fifo" "$BD/runc" "$BD/mnt"
  CSOCK=$BD/containerd.sock SSOCK=$BD/strata.sock SROOT=$BD/strata CSTATE=$BD/containerd/state
  local t0=$SECONDS
  pass_checks
  teardown_pass
  BD=""
  note "[$B] pass took $((SECONDS - t0))s"
}

pass_checks() {
  if start_strata; then pass "strata serve --backend $B starts"; else
    fail "strata serve --backend $B starts" "$(tail -n 20 "$BD/strata.log")"; return; fi
  if start_containerd; then pass "containerd starts with proxy plugin strata"; else
    fail "containerd starts with proxy plugin strata" "$(tail -n 20 "$BD/containerd.log")"; return; fi
  check "containerd loads the strata snapshotter plugin" c_daemons_up

  # Images
  check "ctr images import --no-unpack leaves strata empty" c_no_unpack
  check "ctr: 'snapshots --snapshotter strata unpack' ignores the group flag" c_unpack_group_flag_ignored
  check "ctr snapshots unpack --snapshotter strata commits the layer chain" c_snapshots_unpack
  check "strata itself holds the 3 committed layers and their directories" c_strata_holds_layers
  check "unpack stores whiteouts/opaque dirs the $B way on disk" c_layout_on_disk
  check "ctr images import --snapshotter strata unpacks onto the shared layers" c_import_unpack

  # A container
  check "ctr run -d --snapshotter strata: task runs on an active strata snapshot" c_run_container
  check "container rootfs is mounted from strata's directories" c_rootfs_from_strata
  check "stat inside the container" c_inspect
  check "container: .wh. whiteouts and opaque directory took effect" c_whiteouts
  check "container: lower-layer files read (upper layers win)" c_lower_reads
  check "container: symlinks (relative, absolute, to a directory)" c_symlinks
  check "container: hard links share an inode (layers 1 and 2)" c_hardlinks
  check "container: ownership and modes (setuid, setgid, 0700, sticky)" c_owners_modes
  check "container: write, copy-up modify (owner kept), delete lower file and dir" c_writes
  check "container: writes persist across ctr tasks exec" c_writes_persist
  check "ctr snapshots usage of the container's snapshot counts its writes" c_usage_active

  # ctr snapshots ...
  check "ctr snapshots prepare" c_prepare
  check "ctr snapshots mounts: mount, write and delete in an active snapshot" c_mounts_write
  check "ctr snapshots commit" c_commit
  check "ctr snapshots info" c_info
  check "ctr snapshots view: read-only, shows the committed changes" c_view
  check "view of the image's top layer: container writes did not leak into it" c_image_unchanged
  check "ctr snapshots label: set (containerd.io/snapshot/* reaches strata)" c_label
  check "ctr snapshots label: remove" c_label_remove
  check "ctr snapshots usage (one key and all)" c_usage
  check "ctr snapshots ls and tree" c_ls_tree
  check "refused: prepare of an existing key" refused "already exists" snap prepare snap1 "$CH4"
  check "refused: prepare of an existing active key" refused "already exists" snap prepare c1 "$CH4"
  check "refused: view of an existing key" refused "already exists" snap view view1 snap1
  check "refused: rm of a parent with children" refused "failed precondition" snap rm "$CH4"
  check "refused: commit of a view (strata)" refused "failed precondition" snap commit never view1
  check "refused: commit of a committed snapshot (strata)" refused "failed precondition" snap commit never2 snap1
  check "refused: commit onto an existing name" refused "already exists" snap commit snap1 c1
  snap prepare work3 snap1 >/dev/null 2>&1 || true
  check "refused: prepare on an active parent (strata)" refused "invalid argument" snap prepare child work3
  check "refused: view on an active parent (strata)" refused "invalid argument" snap view childv work3
  check "refused: mounts of a committed snapshot (strata)" refused "failed precondition" snap mounts "$BD/mnt/x" snap1
  check "refused: prepare on a missing parent" refused "not found" snap prepare child2 no-such-parent
  check "refused: info of a missing key" refused "not found" snap info no-such-key
  check "refused: usage of a missing key" refused "not found" snap usage no-such-key
  check "refused: label of a missing key" refused "not found" snap label no-such-key a=b
  check "refused: mounts of a missing key" refused "not found" snap mounts "$BD/mnt/x" no-such-key
  check "refused: commit of a missing key" refused "not found" snap commit never3 no-such-key
  check "refused: rm of a missing key" refused "not found" snap rm no-such-key
  check "refused calls changed nothing" expect_eq "active work3 still there" "$(ls_entry work3)" "Active snap1"
  snap rm work3 >/dev/null 2>&1 || true
  check "ctr snapshots rm, then containerd's GC removes them from strata (Remove + Cleanup)" c_rm_gc
  check "containerd's GC collects an unreferenced view from strata" c_gc_unreferenced_view

  # Restarts under a running containerd
  capture_state
  check "SIGTERM: strata exits 0 and removes its socket" c_sigterm
  check "strata down: containerd reports unavailable and keeps serving" c_down_unavailable
  check "strata restarted (SIGTERM): containerd reconnects without restarting" c_restart
  [ -z "$RECONNECT_S" ] || note "[$B] containerd reached the restarted strata within ${RECONNECT_S}s"
  check "after SIGTERM restart: snapshots, kinds, parents, labels, usage unchanged" c_same_state
  check "after SIGTERM restart: running container still sees its writes" c_exec_after_restart term
  check "after SIGTERM restart: a new container runs" c_new_container
  check "after SIGTERM restart: prepare/commit/rm work" c_api_after_restart term
  capture_state
  check "kill -9: strata dies, stale socket left, containerd reports unavailable" c_sigkill
  check "strata restarted (kill -9): containerd reconnects without restarting" c_restart
  check "after kill -9 restart: snapshots, kinds, parents, labels, usage unchanged" c_same_state
  check "after kill -9 restart: running container still sees its writes" c_exec_after_restart kill
  check "after kill -9 restart: a new container runs" c_new_container
  check "after kill -9 restart: prepare/commit/rm work" c_api_after_restart kill

  check "proxy plugin strata-$OTHER on the same socket reaches the $OTHER backend" c_named_plugin

  # The end: containers, snapshots and images removed, GC
  check "container removed (task killed and deleted, ctr containers rm)" c_remove_container
  check "images rm --sync: containerd's GC leaves strata with no snapshot" c_final_gc
  check "snapshot directories on disk empty (containerd's GC called Cleanup)" c_dirs_empty
  check "content and images gone" c_content_gone
  check "containerd's debug log shows its GC removing snapshots through strata" c_containerd_gc_logged
  check "the other backend holds nothing" c_other_backend_empty
  check "strata stops cleanly at the end" c_stop_strata
}

c_contrib_containerd_config() {
  local dump
  dump=$(containerd --config "$CONTRIB/containerd-config.toml" config dump 2>&1) || { echo "$dump"; return 1; }
  DUMP=$dump python3 - <<'EOF' || { echo "$dump" | grep -A3 'proxy_plugins\|snapshotter ='; return 1; }
import os, re
d = os.environ["DUMP"]
# The keys of [proxy_plugins.strata], in any order: containerd 1.7 dumps more of them
# (capabilities, platform) between address and type.
m = re.search(r'^\s*\[proxy_plugins\.strata\]\n(.*?)(?=^\s*\[)', d, re.M | re.S)
assert m, "no proxy plugin strata"
assert re.search(r'^\s+address = "/run/strata/strata.sock"$', m.group(1), re.M), "proxy plugin address"
assert re.search(r'^\s+type = "snapshot"$', m.group(1), re.M), "proxy plugin type"
cri = d.split('[plugins."io.containerd.grpc.v1.cri".containerd]', 1)[1].split("\n  [", 1)[0]
assert re.search(r'^\s+snapshotter = "strata"$', cri, re.M), "cri snapshotter"
EOF
}

B=contrib
check "contrib/containerd-config.toml: containerd reads the proxy plugin and CRI snapshotter" c_contrib_containerd_config
for b in "${BACKENDS[@]}"; do run_pass "$b"; done

# --------------------------------------------------------- leftover check --
B=all
leftovers() {
  local out=""
  [ -z "$(pids_matching "$T")" ] || out+="containerd, shims or strata still running: $(pids_matching "$T" | tr '\n' ' ')"$'\n'
  [ -z "$(mounts_under "$T")" ] || out+="mounts: $(mounts_under "$T")"$'\n'
  [ -z "$(cgroups_of "$NS")" ] || out+="cgroups: $(cgroups_of "$NS" | tr '\n' ' ')"$'\n'
  printf '%s' "$out"
  [ -z "$out" ]
}
check "nothing left running or mounted after the passes" leftovers

echo
if [ "$NFAIL" -gt 0 ]; then
  echo "failed checks:"
  printf '  %s\n' "${FAILED[@]}"
fi
echo "containerd: $CTRD_VERSION ($(command -v containerd))"
echo "logs: $LOGDIR/<backend>/{strata,containerd}.log"
echo "containerd e2e: $NPASS passed, $NFAIL failed"
[ "$NFAIL" -eq 0 ]

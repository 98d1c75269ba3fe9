#!/usr/bin/env bash
# Unpack under containerd: Strata (proxy plugin, overlay backend) against containerd's
# built-in overlayfs snapshotter, both in one private containerd 1.6, on a generated
# many-file image (by default 5 layers x 2,000 small files + 3 larger files per layer,
# with a whiteout and an opaque directory). Per round and snapshotter, fresh state:
#
#   import   ctr images import --no-unpack          (untimed in the comparison: same for both)
#   unpack   ctr snapshots unpack --snapshotter S    (b)
#   sync     syncfs of S's disk right after it       (the writeback the unpack left behind)
#   run      ctr run --rm --snapshotter S ... sh -c <checks>   (c) container start and stop
#   rm       ctr images rm --sync, until S's snapshot directory is empty   (d)
#
# Rounds alternate who goes first; the table shows medians and Strata / overlayfs.
# Each snapshotter's data is on its own fresh journaled ext4 loop disk, containerd's own
# root (bolt metadata, content store) on a third, shared one. Everything is torn down by a
# trap (containerd, shims, Strata, mounts, loop devices, the run directory) and checked.
#
#   sudo bench/unpack.sh                        3 rounds (~2 min on 2 shared cores)
#   sudo bench/unpack.sh --rounds 5 --json /tmp/unpack.json
#   sudo bench/unpack.sh --layers 5 --files 2000 --big 3
#
# Options:
#   --rounds N        rounds (default 3)
#   --layers N        image layers, at least 3 (default 5)
#   --files N         small files per layer (default 2000)
#   --big N           larger files per layer, 1/2/4/1... MiB of random bytes (default 3)
#   --json FILE       also write the results (every sample) as JSON
#   --strata PATH     the Strata binary (default: build
#                     $CARGO_TARGET_DIR/release/strata, CARGO_TARGET_DIR=/var/tmp/strata-target)
#   --no-build        use $CARGO_TARGET_DIR/release/strata as it is
#   --disk-size SIZE  each sparse loop disk (default 2G)
#   --work-dir DIR    disks, mounts, sockets, logs (default /var/tmp/strata-unpack-bench)
#   --containerd 1.7  Debian 13's containerd 1.7 (fetched once, see scripts/lib/containerd.sh)
#                     instead of the containerd on PATH (Debian 12's 1.6)
#
# Needs root; installs containerd, runc, busybox-static, e2fsprogs and util-linux with
# apt-get when missing. Logs of the last run: <work-dir>/last/{strata,containerd}.log.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
. scripts/lib/common.sh
. scripts/lib/containerd.sh
. scripts/lib/loopdisk.sh

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }
die() { echo "unpack.sh: error: $*" >&2; exit 2; }
note() { echo "unpack.sh: $*" >&2; }

ROUNDS=3 LAYERS=5 FILES=2000 BIG=3 JSON="" STRATA_ARG="" BUILD=1 DISK_SIZE=2G CTRD=""
WORK=/var/tmp/strata-unpack-bench
ARGS=("$@")
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --rounds) ROUNDS=${2:?}; shift 2 ;;
    --layers) LAYERS=${2:?}; shift 2 ;;
    --files) FILES=${2:?}; shift 2 ;;
    --big) BIG=${2:?}; shift 2 ;;
    --json) JSON=${2:?}; shift 2 ;;
    --strata) STRATA_ARG=${2:?}; BUILD=0; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --disk-size) DISK_SIZE=${2:?}; shift 2 ;;
    --work-dir) WORK=${2:?}; shift 2 ;;
    --containerd) CTRD=${2:?}; shift 2 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
for v in ROUNDS LAYERS FILES BIG; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "--${v,,} takes a number"
done
[ "$ROUNDS" -ge 1 ] || die "--rounds must be at least 1"
[ "$LAYERS" -ge 3 ] || die "--layers must be at least 3"
[ "$FILES" -ge 40 ] || die "--files must be at least 40 (the whiteout and opaque dir need them)"
if [ -n "$JSON" ]; then JSON=$(realpath -m -- "$JSON"); fi

require_root "${ARGS[@]}"
ensure_apt containerd runc busybox-static e2fsprogs util-linux
case "$CTRD" in
  "") ;;
  1.7) PATH=$(ensure_containerd17):$PATH || die "could not fetch containerd 1.7" ;;
  *) die "--containerd takes 1.7" ;;
esac
for c in python3 ctr containerd containerd-shim-runc-v2 runc mkfs.ext4 losetup setsid timeout; do
  command -v "$c" >/dev/null 2>&1 || die "'$c' not found"
done
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "$BUSYBOX not found (busybox-static)"

if [ "$BUILD" -eq 1 ]; then
  ensure_rust
  note "building strata (release, $CARGO_TARGET_DIR)"
  build_release
fi
STRATA=$(realpath -e -- "${STRATA_ARG:-$CARGO_TARGET_DIR/release/strata}") ||
  die "strata binary not found; build it: CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo build --release --workspace --bins"

# ------------------------------------------------------------------- state --
NS=strata-unpack-$$
R=$WORK/run-$$           # everything of this run
CSOCK=$R/containerd.sock SSOCK=$R/strata.sock
OVL_ROOT=$R/disk-ovl/root              # containerd's overlayfs snapshotter (root_path)
STRATA_ROOT=$R/disk-strata/root        # Strata --root
SNAPDIR_overlayfs=$OVL_ROOT/snapshots
SNAPDIR_strata=$STRATA_ROOT/overlay/snapshots
DISK_overlayfs=$R/disk-ovl DISK_strata=$R/disk-strata
IMG=localhost/strata-unpack:bulk
SPID="" CPID=""
T_START=$SECONDS
containerd_run_dirs_note

# reap_dir DIR NS: tears down whatever a run left in DIR (processes, shim sockets, mounts,
# loop devices, cgroups), then deletes DIR. Used by the trap and for runs killed with -9.
reap_dir() {
  containerd_reap "$1" "$2" "$1/state"
  loopdisk_release "$1"
  if [ -z "$(mounts_under "$1")" ] && [ -z "$(loops_of "$1")" ]; then
    rm -rf "$1"
  else
    echo "unpack.sh: warning: could not clean $1 up completely" >&2
  fi
}

leftovers() { # what this run left behind (empty: nothing)
  local out=""
  [ -z "$(pids_matching "$R")" ] || out+="processes: $(pids_matching "$R" | tr '\n' ' ')"$'\n'
  [ -z "$(mounts_under "$R")" ] || out+="mounts: $(mounts_under "$R" | tr '\n' ' ')"$'\n'
  grep -F " $R/" /proc/mounts >/dev/null && out+="/proc/mounts still names $R"$'\n'
  losetup -a | grep -F "$R/" >/dev/null && out+="loop devices: $(losetup -a | grep -F "$R/")"$'\n'
  [ -z "$(cgroups_of "$NS")" ] || out+="cgroups of $NS"$'\n'
  [ -e "$R" ] && out+="$R still exists"$'\n'
  printf '%s' "$out"
}

TORN_DOWN=0
teardown() {
  local rc=$?
  [ "$TORN_DOWN" -eq 1 ] && return 0
  TORN_DOWN=1
  trap - EXIT INT TERM HUP
  set +e
  if [ -n "$CPID" ] && running "$CPID"; then containerd_clear "$CSOCK" "$NS"; fi
  kill_wait "$CPID" 10
  kill_wait "$SPID" 10
  if [ -d "$R" ]; then
    mkdir -p "$WORK/last"
    cp -f "$R"/*.log "$WORK/last/" 2>/dev/null
  fi
  reap_dir "$R" "$NS"
  containerd_run_dirs_rm "$NS"
  local left
  left=$(leftovers)
  if [ -z "$left" ]; then
    note "teardown: nothing left (no process, mount, loop device, cgroup or directory of this run)"
  else
    note "teardown: LEFT BEHIND:"; printf '%s\n' "$left" >&2
    [ "$rc" -ne 0 ] || rc=1
  fi
  exit "$rc"
}
trap teardown EXIT
trap 'note "interrupted; tearing down"; exit 130' INT TERM HUP

# Runs killed with SIGKILL leave their run directory behind: reap those.
mkdir -p "$WORK"
for d in "$WORK"/run-*; do
  [ -d "$d" ] || continue
  pid=${d##*-}
  if [[ $pid =~ ^[0-9]+$ ]] && [ "$pid" != "$$" ] && running "$pid" &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -F unpack.sh >/dev/null; then
    continue # another run in progress
  fi
  note "reaping $d, left by an earlier run"
  reap_dir "$d" "strata-unpack-$pid"
done
mkdir -p "$R" "$R/state" "$R/runc" "$R/fifo"
chmod 0711 "$R"

# ---------------------------------------------------------------- helpers --
ctr_() { timeout 300 ctr -a "$CSOCK" -n "$NS" "$@"; }

now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }

entries() { # entries DIR: number of entries in DIR (no fork)
  local a
  shopt -s nullglob dotglob
  a=("$1"/*)
  shopt -u nullglob dotglob
  echo "${#a[@]}"
}

# make_disk NAME: fresh journaled ext4 on a loop device, mounted at $R/disk-NAME
make_disk() { loopdisk_make "$R/disk-$1.img" "$R/disk-$1" "$DISK_SIZE" ext4; }

syncfs_all() { sync -f "$R/disk-meta" "$R/disk-ovl" "$R/disk-strata"; }

GC_N=0
gc_now() { # a synchronous containerd GC
  GC_N=$((GC_N + 1))
  containerd_gc "$CSOCK" "$NS" "bench-gc-$GC_N"
}

dir_has() { [ "$(entries "$1")" -eq "$2" ]; } # dir_has DIR N: DIR has N entries

nsnaps() { ctr_ snapshots --snapshotter "$1" ls | tail -n +2 | wc -l; }

# ------------------------------------------------------------------- setup --
note "run directory $R"
note "generating the image (--bulk $LAYERS,$FILES,$BIG)"
mapfile -t IDS < <(python3 "$REPO/tests/containerd/mkimage.py" --bulk "$LAYERS,$FILES,$BIG" "$BUSYBOX" "$R/image.tar" "$IMG")
DIGEST=${IDS[0]}
[ "${#IDS[@]}" -eq $((LAYERS + 1)) ] || die "mkimage.py printed ${#IDS[@]} lines"
IMAGE_BYTES=$(stat -c %s "$R/image.tar")

note "making 3 loop disks ($DISK_SIZE each, ext4)"
make_disk meta
make_disk ovl
make_disk strata
mkdir -p "$OVL_ROOT" "$STRATA_ROOT"

NO_COLOR=1 RUST_LOG="info,strata_grpc=debug" \
  setsid "$STRATA" serve --config "$REPO/contrib/config.toml" --root "$STRATA_ROOT" --address "$SSOCK" \
  --backend overlay </dev/null >>"$R/strata.log" 2>&1 &
SPID=$!
wait_until 20 test -S "$SSOCK" || die "strata did not start: $(tail -n 5 "$R/strata.log")"

containerd_config "$R/containerd.toml" "$R/disk-meta/root" "$R/state" "$CSOCK" overlayfs
cat >>"$R/containerd.toml" <<EOF

# The built-in overlayfs snapshotter, on its own disk.
[plugins."io.containerd.snapshotter.v1.overlayfs"]
  root_path = "$OVL_ROOT"
EOF
containerd_proxy_plugin "$R/containerd.toml" strata snapshot "$SSOCK"
containerd_start "$R/containerd.toml" "$R/containerd.log" "$CSOCK" ||
  die "containerd did not start: $(tail -n 5 "$R/containerd.log")"
CPID=$CONTAINERD_PID
for s in overlayfs strata; do
  containerd_plugin_ok "$CSOCK" "$NS" io.containerd.snapshotter.v1 "$s" ||
    die "snapshotter $s is not loaded: $(ctr_ plugins ls | grep snapshotter)"
done

# ------------------------------------------------------------- measuring --
SAMPLES=$R/samples.tsv
: >"$SAMPLES"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED_AT=$(date +%Y-%m-%dT%H:%M:%S%z)
T_MEASURE=$SECONDS

# sample ROUND SNAP PHASE T0_US T1_US [LOGS]: a timed phase (wall clock, µs since the epoch,
# the clock of containerd's log timestamps); LOGS is "c0 c1 s0 s1", the byte ranges of
# containerd's and Strata's logs written during it.
sample() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${6:--}" >>"$SAMPLES"; }
logpos() { echo "$(stat -c %s "$R/containerd.log") $(stat -c %s "$R/strata.log")"; }

# Inside the container: layer files are there, the whiteout and the opaque dir took effect.
CHECK="[ -e /bulk/layer$LAYERS.txt ] && [ -e /bulk/d00/e0/l1-f00001 ] && [ ! -e /bulk/d00/e0/l1-f00000 ] && [ ! -e /bulk/d00/e1/l1-f00020 ] && [ -e /bulk/d00/e1/l2-f00020 ] && echo ok"

measure() { # measure ROUND SNAPSHOTTER
  local r=$1 s=$2 t0 t1 t2 p0 p1 out u_unpack u_run dir=SNAPDIR_$2 disk=DISK_$2
  dir=${!dir} disk=${!disk}
  [ "$(nsnaps "$s")" -eq 0 ] && [ "$(entries "$dir")" -eq 0 ] || die "[$s] not empty before round $r"

  # (a) import, not compared: the same work for both.
  t0=$(now_us)
  ctr_ images import --no-unpack "$R/image.tar" >/dev/null
  t1=$(now_us)
  sample "$r" "$s" import "$t0" "$t1"
  gc_now; syncfs_all

  # (b) unpack, then the writeback it left behind
  p0=$(logpos)
  t0=$(now_us)
  ctr_ snapshots unpack --snapshotter "$s" "$DIGEST" >>"$R/ctr.out"
  t1=$(now_us)
  p1=$(logpos)
  sample "$r" "$s" unpack "$t0" "$t1" "$p0 $p1"
  u_unpack=$((t1 - t0))
  t0=$(now_us); sync -f "$disk"; t1=$(now_us)
  sample "$r" "$s" sync "$t0" "$t1"
  [ "$(nsnaps "$s")" -eq "$LAYERS" ] && [ "$(entries "$dir")" -eq "$LAYERS" ] ||
    die "[$s] after unpack: $(nsnaps "$s") snapshots, $(entries "$dir") directories; want $LAYERS"
  gc_now; syncfs_all

  # (c) a container: Prepare + mounts, runc, the checks, then stop and delete
  p0=$(logpos)
  t0=$(now_us)
  out=$(ctr_ run --rm --snapshotter "$s" --runc-root "$R/runc" --fifo-dir "$R/fifo" "$IMG" "c$r-$s" sh -c "$CHECK")
  t1=$(now_us)
  p1=$(logpos)
  [ "$out" = ok ] || die "[$s] the container's checks failed: $out"
  sample "$r" "$s" run "$t0" "$t1" "$p0 $p1"
  u_run=$((t1 - t0))
  # ctr run --rm deletes containerd's record of the container's snapshot; a GC removes it
  # from the snapshotter (untimed).
  gc_now
  wait_until 30 dir_has "$dir" "$LAYERS" || die "[$s] the container's snapshot was not collected"
  syncfs_all

  # (d) removal + GC: images rm --sync runs the GC (Remove of each layer, then Cleanup),
  # then wait until the snapshotter's directory is empty.
  p0=$(logpos)
  t0=$(now_us)
  ctr_ images rm --sync "$IMG" >/dev/null
  t1=$(now_us)
  while [ "$(entries "$dir")" -ne 0 ]; do sleep 0.01; done
  t2=$(now_us)
  p1=$(logpos)
  sample "$r" "$s" rm "$t0" "$t2" "$p0 $p1"
  sample "$r" "$s" rm-sync "$t0" "$t1"
  [ "$(nsnaps "$s")" -eq 0 ] || die "[$s] snapshots left after images rm --sync"
  [ -z "$(ctr_ content ls -q)" ] && [ -z "$(ctr_ images ls -q)" ] || die "[$s] content or image left"
  syncfs_all
  note "round $r/$ROUNDS $s: unpack $((u_unpack / 1000)) ms, run $((u_run / 1000)) ms, rm $(((t2 - t0) / 1000)) ms"
}

for ((r = 1; r <= ROUNDS; r++)); do
  if [ $((r % 2)) -eq 1 ]; then order=(strata overlayfs); else order=(overlayfs strata); fi
  for s in "${order[@]}"; do measure "$r" "$s"; done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
T_MEASURED=$((SECONDS - T_MEASURE))

# ------------------------------------------------------------------ report --
KERNEL=$(uname -r) CPUS=$(nproc) STARTED_AT=$STARTED_AT \
  CTRD_VERSION=$(containerd --version | awk '{print $3}') STRATA_VERSION=$("$STRATA" --version 2>/dev/null || echo "?") \
  python3 - "$SAMPLES" "$R/containerd.log" "$R/strata.log" "$JSON" \
  "$ROUNDS" "$LAYERS" "$FILES" "$BIG" "$IMAGE_BYTES" "$LOAD_START" "$LOAD_END" "$T_MEASURED" \
  "$STRATA" "$DISK_SIZE" "${ARGS[*]}" <<'EOF'
import calendar, json, os, re, statistics, sys, time

(samples_path, clog, slog, json_path, rounds, layers, files, big, image_bytes,
 load_start, load_end, t_measured, strata_bin, disk_size, argv) = sys.argv[1:]
rounds, layers = int(rounds), int(layers)

def go_duration(s):
    """Seconds in a Go duration string (1.5s, 40.3ms, 265.9µs, 1m2s, 800ns)."""
    total = 0.0
    for num, unit in re.findall(r"([0-9.]+)(h|m(?!s)|s|ms|µs|us|ns)", s):
        total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}[unit]
    return total

def log_time(line):
    """Seconds since the epoch of a containerd log line (time="2026-01-02T03:04:05.123456789Z")."""
    m = re.match(r'time="(\d+-\d+-\d+T\d+:\d+:\d+)(\.\d+)?Z"', line)
    return calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + float(m.group(2) or 0)

def slice_of(path, a, b):
    with open(path, "rb") as f:
        f.seek(int(a))
        return f.read(int(b) - int(a)).decode(errors="replace")

def unpack_timeline(text, t0, t1):
    """Splits an unpack's wall time using containerd's log: per layer, Prepare returns (event
    /snapshot/prepare), the diff is applied (\"diff applied\", with its duration d), Commit
    returns (event /snapshot/commit)."""
    ev = []
    for line in text.splitlines():
        if 'msg="diff applied"' in line:
            d = go_duration(re.search(r' d=("?[^ "]+"?)', line).group(1))
            ev.append(("apply", log_time(line), d))
        elif "topic=/snapshot/prepare " in line:
            ev.append(("prepare", log_time(line), 0))
        elif "topic=/snapshot/commit " in line:
            ev.append(("commit", log_time(line), 0))
    kinds = [e[0] for e in ev]
    if kinds != ["prepare", "apply", "commit"] * layers:
        return None
    out = {"start": 0.0, "prepare": 0.0, "apply": 0.0, "to_apply": 0.0, "commit": 0.0, "end": 0.0}
    prev = t0
    for i in range(layers):
        (_, tp, _), (_, ta, d), (_, tc, _) = ev[3 * i: 3 * i + 3]
        if i == 0:
            out["start"] += tp - prev       # ctr starts, finds the image, takes a lease, Stat + first Prepare
        else:
            out["prepare"] += tp - prev     # Stat + Prepare of the next layer (after the last Commit)
        out["to_apply"] += ta - d - tp      # Prepare's mounts to the start of Apply
        out["apply"] += d                   # containerd's diff service: gunzip + untar into the upperdir
        out["commit"] += tc - ta            # Apply's response + Commit
        prev = tc
    out["end"] = t1 - prev                  # image labels, lease deleted, ctr exits
    return out

rows = []    # (round, snapshotter, phase, seconds)
extra = {}   # (round, snapshotter, name) -> value
for line in open(samples_path):
    r, s, phase, t0, t1, logs = line.rstrip("\n").split("\t")
    r, t0, t1 = int(r), int(t0) / 1e6, int(t1) / 1e6
    rows.append((r, s, phase, t1 - t0))
    if logs == "-":
        continue
    c0, s0, c1, s1 = logs.split()
    ctext, stext = slice_of(clog, c0, c1), slice_of(slog, s0, s1)
    if phase == "unpack":
        tl = unpack_timeline(ctext, t0, t1)
        if tl is None:
            print("warning: round %d %s: containerd's log does not show %d Prepare/apply/Commit; no breakdown" % (r, s, layers))
        else:
            for k, v in tl.items():
                extra[(r, s, "unpack." + k)] = v
    if phase == "rm":
        for m in re.finditer(r'msg="snapshot garbage collected" d=("?[^ "\n]+"?) snapshotter=([^ "\n]+)', ctext):
            if m.group(2) == s:
                extra[(r, s, "rm.snapshot_gc")] = extra.get((r, s, "rm.snapshot_gc"), 0) + go_duration(m.group(1))
    if s == "strata":
        ops = {}
        for m in re.finditer(r'op="([a-z_]+)"[^\n]*?elapsed_us=(\d+)', stext):
            n, t = ops.get(m.group(1), (0, 0))
            ops[m.group(1)] = (n + 1, t + int(m.group(2)))
        extra[(r, s, "ops." + phase)] = ops

def vals(s, name):
    v = [val for (r, ss, p, val) in sorted(rows) if ss == s and p == name]
    return v or [val for (r, ss, n), val in sorted(extra.items()) if ss == s and n == name]

def strata_ops(phase, names):
    return [sum(ops.get(o, (0, 0))[1] for o in names) / 1e6
            for (r, ss, n), ops in sorted(extra.items()) if ss == "strata" and n == "ops." + phase]

def med(v):
    return statistics.median(v) if v else None

table = []
def add(pid, title, strata, overlay, compared=True):
    ms, mo = med(strata), med(overlay)
    ratio = (ms / mo) if (compared and ms is not None and mo) else None
    table.append({"id": pid, "title": title, "strata": {"samples_s": strata, "median_s": ms},
                  "overlayfs": {"samples_s": overlay, "median_s": mo}, "ratio": ratio})

add("unpack", "(b) unpack: ctr snapshots unpack", vals("strata", "unpack"), vals("overlayfs", "unpack"))
add("unpack.start", "  ctr start, lookup, lease, 1st Prepare", vals("strata", "unpack.start"), vals("overlayfs", "unpack.start"))
add("unpack.prepare", "  Stat+Prepare, layers 2..%d" % layers, vals("strata", "unpack.prepare"), vals("overlayfs", "unpack.prepare"))
add("unpack.to_apply", "  Prepare returned -> apply starts", vals("strata", "unpack.to_apply"), vals("overlayfs", "unpack.to_apply"))
add("unpack.apply", "  diff apply (gunzip+untar), %d layers" % layers, vals("strata", "unpack.apply"), vals("overlayfs", "unpack.apply"))
add("unpack.commit", "  apply returned -> Commit returned", vals("strata", "unpack.commit"), vals("overlayfs", "unpack.commit"))
add("unpack.end", "  last Commit -> ctr exits", vals("strata", "unpack.end"), vals("overlayfs", "unpack.end"))
add("unpack.strata_prepare", "  Strata's own time: %d Prepares" % layers, strata_ops("unpack", ("prepare",)), [], False)
add("unpack.strata_commit", "  Strata's own time: %d Commits" % layers, strata_ops("unpack", ("commit",)), [], False)
add("sync", "(b') syncfs of its disk right after", vals("strata", "sync"), vals("overlayfs", "sync"))
add("run", "(c) ctr run --rm (start, checks, stop)", vals("strata", "run"), vals("overlayfs", "run"))
add("run.strata", "  Strata's own time (Prepare, Mounts...)", strata_ops("run", ("prepare", "mounts", "stat", "remove")), [], False)
add("rm", "(d) images rm --sync, until dir empty", vals("strata", "rm"), vals("overlayfs", "rm"))
add("rm.snapshot_gc", "  containerd's snapshot GC (Remove+Cleanup)", vals("strata", "rm.snapshot_gc"), vals("overlayfs", "rm.snapshot_gc"))
add("rm.strata", "  Strata's own time (Remove, Cleanup)", strata_ops("rm", ("remove", "cleanup")), [], False)
add("import", "(a) import --no-unpack (same work, not compared)", vals("strata", "import"), vals("overlayfs", "import"), False)

def fmt(v):
    if v is None:
        return "-"
    return "%.3f s" % v if v >= 1 else "%.1f ms" % (v * 1e3)

print()
print("Unpack under containerd %s: Strata (proxy plugin, overlay backend) vs built-in overlayfs" % os.environ["CTRD_VERSION"])
print("image: %d layers x %s small files + %s larger files per layer, tarball %.1f MiB; %d rounds, alternating"
      % (layers, files, big, int(image_bytes) / 2**20, rounds))
print("kernel %s, %s CPUs, load %s -> %s" % (os.environ["KERNEL"], os.environ["CPUS"], load_start, load_end))
print()
w = max(len(t["title"]) for t in table)
print("%-*s  %14s  %14s  %6s" % (w, "phase", "Strata median", "overlayfs med.", "ratio"))
print("-" * (w + 42))
for t in table:
    ratio = "%.2f" % t["ratio"] if t["ratio"] is not None else ""
    print("%-*s  %14s  %14s  %6s" % (w, t["title"], fmt(t["strata"]["median_s"]), fmt(t["overlayfs"]["median_s"]), ratio))
print()
print("ratio = Strata / overlayfs (below 1: Strata faster). Indented rows split the phase above")
print("(from containerd's debug log timeline and Strata's own request log). Samples, by round:")
for t in table:
    if t["id"] in ("unpack", "sync", "run", "rm"):
        print("  %-6s Strata %s | overlayfs %s" % (t["id"], " ".join(fmt(v) for v in t["strata"]["samples_s"]),
                                                 " ".join(fmt(v) for v in t["overlayfs"]["samples_s"])))
for phase in ("unpack", "run", "rm"):
    ops = extra.get((rounds, "strata", "ops." + phase), {})
    if ops:
        print("  Strata's requests, %s of round %d: %s" % (phase, rounds, ", ".join(
            "%s %dx %.1f ms" % (o, n, t / 1e3) for o, (n, t) in sorted(ops.items()))))
print("measurements took %s s" % t_measured)

if json_path:
    doc = {
        "meta": {"command": ("bench/unpack.sh " + argv).strip(), "start": os.environ["STARTED_AT"],
                 "kernel": os.environ["KERNEL"], "cpus": int(os.environ["CPUS"]),
                 "load_start": load_start, "load_end": load_end, "containerd": os.environ["CTRD_VERSION"],
                 "strata_binary": strata_bin, "strata_version": os.environ["STRATA_VERSION"],
                 "rounds": rounds, "disk_size": disk_size,
                 "image": {"layers": layers, "files_per_layer": int(files), "big_files_per_layer": int(big),
                           "tarball_bytes": int(image_bytes)}},
        "phases": table,
        "samples": [{"round": r, "snapshotter": s, "phase": p, "seconds": v} for (r, s, p, v) in rows],
        "breakdown": [{"round": r, "snapshotter": s, "part": n, "seconds": v}
                      for (r, s, n), v in sorted(extra.items()) if not n.startswith("ops.")],
        "strata_requests": [{"round": r, "phase": n[len("ops."):],
                             "ops": {o: {"count": c, "server_us": t} for o, (c, t) in ops.items()}}
                            for (r, s, n), ops in sorted(extra.items()) if n.startswith("ops.")],
        "measured_s": int(t_measured),
    }
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=2)
    print("JSON written to %s" % json_path)
EOF
note "took $((SECONDS - T_START)) s in all (measurements $T_MEASURED s)"

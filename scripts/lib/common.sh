# Shared helpers of the project's shell scripts (scripts/, tests/, bench/): root check,
# installing what is missing, the one way to build Strata, process, mount and cgroup
# teardown. Sourced, not executed; needs bash. Nothing here changes the caller's `set`
# options, and every helper is safe under `set -e` (a teardown step that fails does not end
# the caller; the helpers that report something return non-zero only for that). The containerd helpers are in containerd.sh, the loop-disk ones in loopdisk.sh.

require_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "$(basename "$0"): run as root (Strata and its tests mount filesystems): sudo $0 $*" >&2
        exit 1
    fi
}

# ensure_apt PKG...: installs the Debian packages that are not installed yet.
ensure_apt() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing: ${missing[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# ensure_rust: a Rust toolchain new enough for edition 2024 (Debian's own is too old), from
# rustup when cargo is missing.
ensure_rust() {
    # rustc links with the system C compiler driver, whoever installed Rust.
    ensure_apt gcc libc6-dev
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    if ! command -v cargo >/dev/null 2>&1; then
        ensure_apt curl ca-certificates
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
            sh -s -- -y --profile minimal --component clippy,rustfmt
        . "$HOME/.cargo/env"
    fi
}

# The cargo target directory: outside the checkout, so repeated runs on one machine reuse it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/strata-target}"

# build_strata: builds the workspace's binaries the one way scripts/test and scripts/serve
# share, and sets STRATA_BIN to the daemon: the dev profile, every workspace member
# (`--workspace`), default features, so going from one script to the other compiles nothing
# twice. What the scripts used to differ in cost a rebuild each time: a release build compiles
# every crate a second time, and `-p strata` alone resolves features over fewer packages
# (strata-bench turns on rustix's `param`), so rustix and every crate above it were built
# twice and target/debug/strata relinked whenever one script followed the other. (The test
# suite's own `cargo nextest run` still builds strata-core and the crates above it once more:
# its binary has the crash points, a dev-dependency feature, that the daemon must not have.
# The workspace takes regex's default features so that at least regex and the crates below
# are shared: see Cargo.toml.)
build_strata() {
    cargo build --locked --workspace --bins || return 1
    STRATA_BIN=$CARGO_TARGET_DIR/debug/strata
}

# build_release: the benchmarks' build (they measure optimised code): release profile, the
# same package selection as build_strata, so bench/run.sh and bench/unpack.sh share it.
build_release() {
    cargo build --locked --release --workspace --bins
}

# go_offline GOPATH_DIR: the environment to build Go test helpers offline in GOPATH mode
# against the Debian-packaged containerd 1.6 sources (golang-go,
# golang-github-containerd-containerd-dev); fails saying what to install when they are
# missing. Exports it into the caller's shell: call it in a subshell to keep it there.
go_offline() {
    local src=/usr/share/gocode/src/github.com/containerd/containerd
    if ! command -v go >/dev/null 2>&1 || [ ! -f "$src/snapshots/testsuite/testsuite.go" ]; then
        echo "$(basename "$0"): Go or containerd's source is missing: apt-get install golang-go golang-github-containerd-containerd-dev" >&2
        return 1
    fi
    export GO111MODULE=off GOPROXY=off GOFLAGS= CGO_ENABLED=0
    export GOPATH="$1:/usr/share/gocode"
    export GOCACHE=${GOCACHE:-/var/tmp/strata-gocache}
    mkdir -p "$GOCACHE"
}

# ---------------------------------------------------------------- processes --

# running PID: the process exists and is not a zombie (a child stays a zombie until waited
# for, and kill -0 succeeds on it).
running() {
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

stopped() { ! running "$1"; }

# alive_and PID COMMAND...: COMMAND's status while PID runs, 255 once it is gone (which
# stops a wait_until at once).
alive_and() {
    local pid=$1
    shift
    running "$pid" || return 255
    "$@"
}

# wait_until SECONDS COMMAND...: runs COMMAND (output discarded) every 0.1 s until it
# succeeds (0) or SECONDS pass (1); gives up at once if COMMAND returns 255.
wait_until() {
    local deadline=$((SECONDS + $1)) rc
    shift
    while :; do
        rc=0
        "$@" >/dev/null 2>&1 || rc=$?
        [ "$rc" -eq 0 ] && return 0
        [ "$rc" -ne 255 ] && [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# kill_wait PID SECONDS: SIGTERM, SIGKILL after SECONDS, then reaps it if it is our child.
# An empty PID does nothing.
kill_wait() {
    local pid=$1 secs=$2 i
    [ -n "$pid" ] || return 0
    if running "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < secs * 10; i++)); do running "$pid" || break; sleep 0.1; done
        if running "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    wait "$pid" 2>/dev/null || true
}

# pids_matching DIR: processes whose command line names a path under DIR/ and that are
# containerd, a containerd shim or `strata serve` (what a test run under DIR starts: a shim
# names its containerd's socket with -address).
pids_matching() {
    local p cmd
    for p in /proc/[0-9]*; do
        [ "${p#/proc/}" = "$$" ] && continue
        cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
        case "$cmd" in
            "containerd "*"$1/"* | *"/containerd "*"$1/"* | *"containerd-shim"*"$1/"* | *"strata serve"*"$1/"*)
                echo "${p#/proc/}" ;;
        esac
    done
}

# kill_matching DIR: SIGTERM to pids_matching DIR, SIGKILL to those left after 5 s; waits
# up to 2 s more for them to go.
kill_matching() {
    local pid i
    for pid in $(pids_matching "$1"); do kill -TERM "$pid" 2>/dev/null || true; done
    for ((i = 0; i < 50; i++)); do [ -z "$(pids_matching "$1")" ] && break; sleep 0.1; done
    for pid in $(pids_matching "$1"); do kill -KILL "$pid" 2>/dev/null || true; done
    for ((i = 0; i < 20; i++)); do [ -z "$(pids_matching "$1")" ] && break; sleep 0.1; done
}

# ------------------------------------------------------------------- mounts --

# mounts_under DIR: the mount points under DIR/, deepest first.
mounts_under() {
    awk -v p="$1/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

# unmount_under DIR: unmounts everything under DIR/, deepest first; a few rounds, lazily
# from the third (a mount can stay busy for a moment after its last process exits).
unmount_under() {
    local m i
    for i in 1 2 3 4 5; do
        for m in $(mounts_under "$1"); do
            umount "$m" 2>/dev/null || { [ "$i" -ge 3 ] && umount -l "$m" 2>/dev/null; } || true
        done
        [ -z "$(mounts_under "$1")" ] && return 0
        sleep 0.2
    done
    return 1
}

# ------------------------------------------------------------------ cgroups --

# cgroup_cleanup NAME: kills the processes left in the cgroups containerd made for the
# namespace NAME (v1 hierarchies and v2), then removes those cgroups.
cgroup_cleanup() {
    local f pid d
    for f in /sys/fs/cgroup/*/"$1"/*/cgroup.procs /sys/fs/cgroup/"$1"/*/cgroup.procs; do
        [ -f "$f" ] || continue
        while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$f"
    done
    for d in /sys/fs/cgroup/*/"$1"/* /sys/fs/cgroup/"$1"/* /sys/fs/cgroup/*/"$1" /sys/fs/cgroup/"$1"; do
        [ -d "$d" ] && rmdir "$d" 2>/dev/null || true
    done
}

# cgroups_of NAME: the cgroups of the namespace NAME that still exist.
cgroups_of() {
    local d
    for d in /sys/fs/cgroup/*/"$1" /sys/fs/cgroup/"$1"; do [ -d "$d" ] && echo "$d"; done
    return 0
}

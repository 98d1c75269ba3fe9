# Helpers for scripts that run a private containerd (tests/containerd/run.sh,
# bench/unpack.sh): its configuration, start, synchronous GC, teardown, and containerd 1.7
# from Debian 13 without touching the system's apt sources. Sourced after common.sh.

# containerd_config FILE ROOT STATE SOCK [SNAPSHOTTER...]: writes the configuration
# (version 2: containerd 1.6 and 1.7 both read it) of a private containerd: its own root,
# state and sockets (gRPC on SOCK, ttrpc on SOCK.ttrpc), debug logging; no CRI, no NRI (it
# would listen on /var/run/nri), no tracing, and none of the built-in snapshotters but the
# SNAPSHOTTERs named (e.g. overlayfs), so that nothing can silently fall back to one.
# Callers append their own sections (containerd_proxy_plugin, snapshotter options).
containerd_config() {
    local file=$1 root=$2 state=$3 sock=$4 s
    shift 4
    {
        cat <<EOF
version = 2
root = "$root"
state = "$state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.nri.v1.nri",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
EOF
        for s in aufs blockfile btrfs devmapper native overlayfs zfs; do
            case " $* " in *" $s "*) ;; *) echo "  \"io.containerd.snapshotter.v1.$s\"," ;; esac
        done
        cat <<EOF
]

[grpc]
  address = "$sock"

[ttrpc]
  address = "$sock.ttrpc"

[debug]
  address = ""
  level = "debug"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$state/opt"
EOF
    } >"$file"
}

# containerd_proxy_plugin FILE NAME TYPE ADDRESS: appends a proxy plugin (TYPE snapshot,
# content, or with 1.7 diff) served on the unix socket ADDRESS.
containerd_proxy_plugin() {
    printf '\n[proxy_plugins.%s]\n  type = "%s"\n  address = "%s"\n' "$2" "$3" "$4" >>"$1"
}

# containerd_start CONFIG LOG SOCK: starts containerd (the first on PATH) in its own session,
# logging to LOG; sets CONTAINERD_PID; succeeds once it answers on SOCK (30 s at most).
containerd_start() {
    setsid containerd --config "$1" </dev/null >>"$2" 2>&1 &
    CONTAINERD_PID=$!
    wait_until 30 alive_and "$CONTAINERD_PID" timeout 5 ctr -a "$3" version
}

# containerd_version: the version of the containerd first on PATH (e.g. 1.7.24~ds1).
containerd_version() {
    containerd --version | awk '{print $3}'
}

# containerd_plugin_ok SOCK NS TYPE NAME: the plugin TYPE/NAME (e.g. io.containerd.snapshotter.v1
# strata) is loaded and ok.
containerd_plugin_ok() {
    timeout 60 ctr -a "$1" -n "$2" plugins ls |
        awk -v t="$3" -v n="$4" '$1 == t && $2 == n { print $NF }' | grep -x ok >/dev/null
}

# containerd_gc SOCK NS ID: a synchronous garbage collection (deleting a lease with --sync
# runs one); ID names the throw-away lease.
containerd_gc() {
    timeout 300 ctr -a "$1" -n "$2" leases create --id "$3" >/dev/null &&
        timeout 300 ctr -a "$1" -n "$2" leases rm --sync "$3" >/dev/null
}

# containerd_clear SOCK NS: kills and deletes every task, then deletes every container of NS.
containerd_clear() {
    local c ctr=(timeout 10 ctr -a "$1" -n "$2")
    for c in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
        "${ctr[@]}" tasks kill -a -s KILL "$c" >/dev/null 2>&1 || true
    done
    for c in $("${ctr[@]}" containers ls -q 2>/dev/null); do
        wait_until 5 task_stopped "$1" "$2" "$c" || true
        "${ctr[@]}" tasks rm -f "$c" >/dev/null 2>&1 || true
        "${ctr[@]}" containers rm "$c" >/dev/null 2>&1 || true
    done
}

# task_stopped SOCK NS ID: the task of container ID is not running.
task_stopped() {
    ! timeout 5 ctr -a "$1" -n "$2" tasks ls 2>/dev/null | awk -v c="$3" '$1 == c && /RUNNING/' | grep . >/dev/null
}

# task_running SOCK NS ID: the task of container ID is running.
task_running() {
    timeout 5 ctr -a "$1" -n "$2" tasks ls 2>/dev/null | awk -v c="$3" '$1 == c && /RUNNING/' | grep . >/dev/null
}

# containerd_run_dirs_note: remembers which of /run/containerd{,/s,/fifo,/runc} exist, for
# containerd_run_dirs_rm. (containerd, its shims and ctr make them whatever the
# configuration says.)
containerd_run_dirs_note() {
    declare -gA CONTAINERD_RUN_DIRS_BEFORE=()
    local d
    for d in /run/containerd /run/containerd/s /run/containerd/fifo /run/containerd/runc; do
        [ -e "$d" ] && CONTAINERD_RUN_DIRS_BEFORE[$d]=1
    done
    return 0
}

# containerd_run_dirs_rm NS: removes those of the directories made since
# containerd_run_dirs_note (and NS's runc directory) that are empty.
containerd_run_dirs_rm() {
    local d
    for d in /run/containerd/runc/"$1" /run/containerd/fifo /run/containerd/s /run/containerd/runc /run/containerd; do
        if [ -z "${CONTAINERD_RUN_DIRS_BEFORE[$d]:-}" ] && [ -d "$d" ]; then rmdir "$d" 2>/dev/null || true; fi
    done
    return 0
}

# containerd_reap DIR NS STATE: tears down what a run under DIR left: the processes of NS's
# containers (by cgroup), containerd, shims and Strata daemons naming DIR/, the shims'
# sockets (under /run/containerd/s, recorded in STATE), the mounts under DIR and NS's
# cgroups. Does not delete DIR.
containerd_reap() {
    local dir=$1 ns=$2 state=$3 f sock
    cgroup_cleanup "$ns"
    kill_matching "$dir"
    cgroup_cleanup "$ns"
    for f in "$state"/io.containerd.runtime.v2.task/*/*/address; do
        [ -f "$f" ] || continue
        sock=$(sed 's#^unix://##' "$f")
        case "$sock" in /run/containerd/s/*) [ -S "$sock" ] && rm -f "$sock" ;; esac
    done
    unmount_under "$dir" || true
    cgroup_cleanup "$ns"
}

# debian_mirror: the URI of the Debian archive this system's apt uses (the entry of
# /etc/apt/sources.list.d/ or /etc/apt/sources.list whose suite is this release's codename);
# $STRATA_DEBIAN_MIRROR if set.
debian_mirror() {
    if [ -n "${STRATA_DEBIAN_MIRROR:-}" ]; then
        echo "$STRATA_DEBIAN_MIRROR"
        return 0
    fi
    local codename f uri
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [ -n "$codename" ] || return 1
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list /etc/apt/sources.list; do
        [ -f "$f" ] || continue
        case "$f" in
            *.sources) # deb822 stanzas: Types, URIs, Suites (Enabled: no skips one)
                uri=$(awk -v cn="$codename" '
                    function flush() {
                        if (on && types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " cn " ") && uris ~ /^https?:/) {
                            split(uris, u, " "); print u[1]; done = 1
                        }
                        types = uris = suites = ""; on = 1
                    }
                    BEGIN { on = 1 }
                    done { exit }
                    /^[ \t]*#/ { next }
                    /^[ \t]*$/ { flush(); next }
                    { key = tolower($1); sub(/^[^:]*:[ \t]*/, "") }
                    key == "types:" { types = $0 }
                    key == "uris:" { uris = $0 }
                    key == "suites:" { suites = $0 }
                    key == "enabled:" && tolower($0) == "no" { on = 0 }
                    END { if (!done) flush() }' "$f" | head -n 1) ;;
            *) # one-line format: deb [options] URI SUITE COMPONENT...
                uri=$(sed -E 's/\[[^]]*\]//' "$f" |
                    awk -v cn="$codename" '$1 == "deb" && $3 == cn && $2 ~ /^https?:/ { print $2; exit }') ;;
        esac
        if [ -n "$uri" ]; then
            echo "${uri%/}"
            return 0
        fi
    done
    return 1
}

# ensure_containerd17: prints the directory holding Debian 13's containerd 1.7 (containerd,
# ctr, containerd-shim-runc-v2), fetching its .deb the first time. Debian 12 ships only
# containerd 1.6; trixie's 1.7 binaries need nothing but libc and work with Debian 12's runc.
# The fetch uses a private apt configuration in the cache directory (a sources list with the
# system's own Debian mirror and the suite trixie, private lists and cache): the system's
# apt sources are never changed and nothing is installed from that list (it would upgrade
# libc). Cached in $STRATA_CONTAINERD17_DIR (default /var/tmp/strata-containerd-1.7): later
# calls print the directory at once, offline.
ensure_containerd17() {
    local cache=${STRATA_CONTAINERD17_DIR:-/var/tmp/strata-containerd-1.7}
    local bin=$cache/root/usr/bin mirror keyring deb version
    if [ -f "$cache/ok" ] && [ -x "$bin/containerd" ] && [ -x "$bin/ctr" ] && [ -x "$bin/containerd-shim-runc-v2" ]; then
        echo "$bin"
        return 0
    fi
    mirror=$(debian_mirror) || {
        echo "ensure_containerd17: no Debian mirror found in /etc/apt/sources.list{,.d/} (set STRATA_DEBIAN_MIRROR)" >&2
        return 1
    }
    echo "ensure_containerd17: fetching containerd/trixie from $mirror into $cache" >&2
    rm -rf "$cache"
    mkdir -p "$cache/lists/partial" "$cache/apt-cache/archives/partial" "$cache/deb"
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    if [ -f "$keyring" ]; then keyring="[signed-by=$keyring] "; else keyring=""; fi
    echo "deb $keyring$mirror trixie main" >"$cache/sources.list"
    local apt=(apt-get -q -o "Dir::Etc::SourceList=$cache/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$cache/lists" -o "Dir::Cache=$cache/apt-cache" -o Acquire::Languages=none)
    if ! "${apt[@]}" update >"$cache/apt.log" 2>&1 ||
        ! (cd "$cache/deb" && "${apt[@]}" download containerd/trixie) >>"$cache/apt.log" 2>&1; then
        echo "ensure_containerd17: apt-get failed:" >&2
        tail -n 20 "$cache/apt.log" >&2
        return 1
    fi
    deb=$(ls "$cache"/deb/containerd_*.deb) && dpkg -x "$deb" "$cache/root" || {
        echo "ensure_containerd17: could not unpack the .deb in $cache/deb" >&2
        return 1
    }
    version=$("$bin/containerd" --version | awk '{print $3}')
    case "$version" in
        1.7.*) ;;
        *) echo "ensure_containerd17: trixie's containerd is $version, not 1.7" >&2; return 1 ;;
    esac
    # The lists and the .deb are no longer needed (~60 MB); the binaries stay.
    rm -rf "$cache/lists" "$cache/apt-cache" "$cache/deb"
    echo "$version" >"$cache/ok"
    echo "ensure_containerd17: containerd $version in $bin" >&2
    echo "$bin"
}

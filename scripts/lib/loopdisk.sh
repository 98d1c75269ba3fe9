# Loop-disk helpers: a fresh filesystem on a sparse image file, for benchmarks and tests that
# must not depend on the root filesystem (see NOTES: it has no journal here). Sourced after
# common.sh. The Rust tests' twin is strata_sys::testing (crates/strata-sys/src/testing.rs).

# loopdisk_make IMAGE MOUNTPOINT SIZE [FSTYPE]: makes a sparse IMAGE of SIZE (e.g. 2G), a
# FSTYPE filesystem in it (ext4, the default: journaled, with inode tables and journal
# written now rather than by ext4lazyinit during measurements; btrfs; xfs) and mounts it on
# MOUNTPOINT with `mount -o loop` (which frees the loop device at umount).
loopdisk_make() {
    local img=$1 mnt=$2 size=$3 fs=${4:-ext4}
    truncate -s "$size" "$img" || return 1
    case "$fs" in
        ext4) mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$img" ;;
        *) "mkfs.$fs" -q -f "$img" >/dev/null ;;
    esac || { echo "loopdisk_make: mkfs.$fs $img failed (is its package installed?)" >&2; return 1; }
    mkdir -p "$mnt"
    mount -t "$fs" -o loop "$img" "$mnt"
}

# loops_of DIR: the loop devices backed by DIR/*.img.
loops_of() {
    local img
    for img in "$1"/*.img; do
        [ -e "$img" ] || continue
        losetup -j "$img" 2>/dev/null | cut -d: -f1
    done
}

# loopdisk_release DIR: detaches the loop devices still backed by DIR/*.img (after a lazy
# unmount, say); unmount first.
loopdisk_release() {
    local dev
    for dev in $(loops_of "$1"); do losetup -d "$dev" 2>/dev/null || true; done
}

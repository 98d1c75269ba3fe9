# Shared helpers of the scripts in scripts/: root check, installing what is missing.
# Sourced, not executed.

require_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "$(basename "$0"): run as root (Strata and its tests mount filesystems): sudo $0 $*" >&2
        exit 1
    fi
}

# ensure_apt PKG...: installs the Debian packages that are not installed yet.
ensure_apt() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing: ${missing[*]}"
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

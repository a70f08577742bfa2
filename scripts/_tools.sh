# Sourced by scripts/test, scripts/bench and .ci/run: the Debian packages the tests use, and
# installing the missing ones with apt-get.
#
#   opusi_tools [--strict] WHO [PACKAGE ...]
#
# Checks the packages below (or only the PACKAGEs named) and installs the missing ones when this
# process may: running as root or with passwordless sudo, apt-get present and OPUSI_NO_APT is not
# 1. Otherwise it prints one line naming the missing packages and the command that installs them,
# and returns 0 (the tests that need them skip with their reason). WHO starts every message.
# --strict (CI): return 1 instead when a package is missing and cannot be installed (unless
# OPUSI_NO_APT=1 asked not to try).

# "package  command [alternative ...]": the package is missing when none of the commands is on
# PATH (an alternative can be an absolute path).
_OPUSI_PACKAGES=(
    "tinyproxy    tinyproxy"               # real proxy for the proxy tests (test_proxy, test_fetcher) and the fault suite
    "7zip         7zz"                     # native tool the benchmark compares against (its quick run is a test: test_bench)
    "zip          zip"                     # native tool the benchmark compares against (test_bench)
    "curl         curl"                    # native tool the benchmark compares against (test_bench)
    "nginx-light  nginx /usr/sbin/nginx"   # the benchmark's second download server (test_bench)
    "xvfb         Xvfb"                    # a display for the window tests (test_window)
    "xdotool      xdotool"                 # keys into the window under Xvfb (test_window)
    "e2fsprogs    chattr"                  # chattr, for the "file cannot be replaced" fault cases (and test_preflight as root)
    "qemu-system-x86 qemu-system-x86_64"   # the power-cut guest (tests/powercut, scripts/powercut)
    "wrk          wrk"                     # load generator for the server's figures (scripts/loadbench)
    "postgresql   initdb pg_ctl /usr/lib/postgresql/17/bin/initdb /usr/lib/postgresql/16/bin/initdb /usr/lib/postgresql/15/bin/initdb"  # the shared license registry (tests/postgres)
    "chromium     chromium"                # the support desk's browser tests (tests/desk), headless
    "chromium-driver chromedriver /usr/lib/chromium/chromedriver"  # Selenium's driver for it
    "busybox-static  /bin/busybox"         # the guest's shell and tools (its kernel, linux-image-cloud-amd64, tests/support/qemu.py installs)
)

opusi_tools() {
    local strict=0
    if [ "${1:-}" = --strict ]; then strict=1; shift; fi
    local who="$1"; shift
    local entry pkg cmds cmd found missing=() why=()
    for entry in "${_OPUSI_PACKAGES[@]}"; do
        read -r pkg cmds <<<"$entry"
        if [ $# -gt 0 ] && [[ " $* " != *" $pkg "* ]]; then continue; fi
        found=0
        for cmd in $cmds; do
            if [[ "$cmd" == /* ]]; then
                if [ -x "$cmd" ]; then found=1; fi
            elif command -v "$cmd" >/dev/null 2>&1; then
                found=1
            fi
        done
        if [ "$found" = 0 ]; then missing+=("$pkg"); why+=("${cmds%% *}"); fi
    done
    [ ${#missing[@]} -gt 0 ] || return 0

    local sudo=() cannot="" notfound
    notfound="$(printf '%s, ' "${why[@]}")"; notfound="${notfound%, } not found"
    if [ "${OPUSI_NO_APT:-}" = 1 ]; then cannot="OPUSI_NO_APT=1 is set"
    elif ! command -v apt-get >/dev/null 2>&1; then cannot="no apt-get on this system"
    elif [ "$(id -u)" -eq 0 ]; then :
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo=(sudo -n)
    else cannot="not root and no passwordless sudo"
    fi
    if [ -n "$cannot" ]; then
        local fail=0 outcome="the tests that need them skip"
        if [ "$strict" = 1 ] && [ "${OPUSI_NO_APT:-}" != 1 ]; then fail=1; outcome="stopping"; fi
        echo "$who: not installing ${missing[*]} ($notfound; $cannot): $outcome;" \
            "install with: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
        return "$fail"
    fi

    echo "$who: installing ${missing[*]} with apt-get ($notfound; the tests that need them would skip;" \
        "OPUSI_NO_APT=1 turns this off)" >&2
    local apt=(${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive)
    if "${apt[@]}" apt-get update -qq >/dev/null; then
        # nginx-light is gone from newer Debian releases; plain nginx serves as well
        if [[ " ${missing[*]} " == *" nginx-light "* ]] && ! apt-cache show nginx-light >/dev/null 2>&1; then
            missing=("${missing[@]/#nginx-light/nginx}")
        fi
        "${apt[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null && return 0
    fi
    if [ "$strict" = 1 ]; then echo "$who: apt-get could not install ${missing[*]}: stopping" >&2; return 1; fi
    echo "$who: apt-get could not install ${missing[*]}: the tests that need them skip" >&2
}

#!/usr/bin/env bash
# Asterisk 22 for the IVR: the system's own when installed, otherwise a Debian sid root
# bootstrapped once with debootstrap and run chrooted (sharing the host's network).
#
#   deploy/asterisk.sh provision          make sure an Asterisk 22 can run (cached)
#   deploy/asterisk.sh mode               print "system" or "chroot"
#   deploy/asterisk.sh run CONF DATA      run Asterisk in the foreground with CONF (asterisk.conf);
#                                          DATA is the folder holding config, recordings, prompts
#   deploy/asterisk.sh rx CONF DATA CMD   run one CLI command against that instance
#
# Environment: IVR_ASTERISK_MODE (auto|system|chroot), IVR_ASTERISK_ROOT (the sid root,
# default /var/cache/ivr/asterisk-root), IVR_DEBIAN_MIRROR (default: the host's own Debian
# mirror from its apt sources).
set -euo pipefail

ROOT=${IVR_ASTERISK_ROOT:-/var/cache/ivr/asterisk-root}
MODE=${IVR_ASTERISK_MODE:-auto}
PACKAGES=asterisk,asterisk-modules,asterisk-core-sounds-en-gsm,asterisk-moh-opsound-gsm

die() { echo "deploy/asterisk.sh: $*" >&2; exit 1; }

system_asterisk_ok() {
    command -v asterisk >/dev/null 2>&1 || return 1
    local v
    v=$(asterisk -V 2>/dev/null | sed -n 's/^Asterisk \([0-9]*\).*/\1/p')
    [ -n "$v" ] && [ "$v" -ge 22 ]
}

resolve_mode() {
    case "$MODE" in
        system) system_asterisk_ok || die "IVR_ASTERISK_MODE=system but no Asterisk >= 22 on PATH"; echo system ;;
        chroot) echo chroot ;;
        auto) if system_asterisk_ok; then echo system; else echo chroot; fi ;;
        *) die "IVR_ASTERISK_MODE must be auto, system or chroot, not '$MODE'" ;;
    esac
}

debian_mirror() {
    if [ -n "${IVR_DEBIAN_MIRROR:-}" ]; then echo "$IVR_DEBIAN_MIRROR"; return; fi
    local m
    m=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
        | grep -v -- '-security' | grep -oE 'https?://[^ ]+/debian/?' | head -n 1)
    [ -n "$m" ] || die "no Debian mirror found in this machine's apt sources (not a Debian host?): set IVR_DEBIAN_MIRROR to a Debian mirror URL"
    echo "${m%/}"
}

provision_chroot() {
    if [ -x "$ROOT/usr/sbin/asterisk" ] && [ -f "$ROOT/.ivr-complete" ]; then
        return 0
    fi
    command -v debootstrap >/dev/null 2>&1 || die "debootstrap is missing: apt-get install debootstrap"
    local mirror tmp keyring=()
    mirror=$(debian_mirror)
    if [ -f /usr/share/keyrings/debian-archive-keyring.gpg ]; then
        keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
    fi
    tmp="$ROOT.partial"
    rm -rf "$tmp"
    mkdir -p "$(dirname "$ROOT")"
    echo "deploy/asterisk.sh: bootstrapping Debian sid with Asterisk into $ROOT (about a minute, 500 MB)" >&2
    debootstrap --variant=minbase "${keyring[@]}" --include="$PACKAGES" sid "$tmp" "$mirror" >&2 \
        || die "debootstrap failed; see the messages above"
    [ -x "$tmp/usr/sbin/asterisk" ] || die "debootstrap finished but $tmp/usr/sbin/asterisk is missing"
    chroot "$tmp" /usr/sbin/asterisk -V > "$tmp/.ivr-complete"
    rm -rf "$ROOT"
    mv "$tmp" "$ROOT"
    echo "deploy/asterisk.sh: $(cat "$ROOT/.ivr-complete") ready in $ROOT" >&2
}

cmd=${1:-}
case "$cmd" in
    provision)
        m=$(resolve_mode)
        if [ "$m" = chroot ]; then provision_chroot; fi
        echo "asterisk: $m"
        ;;
    mode)
        resolve_mode
        ;;
    run)
        conf=${2:?usage: run CONF DATA}; data=${3:?usage: run CONF DATA}
        data=$(realpath "$data"); conf=$(realpath "$conf")
        case "$conf" in "$data"/*) ;; *) die "CONF must be inside DATA so the chroot can see it" ;; esac
        # Asterisk starts as root and drops to runuser/rungroup (asterisk.conf, rendered by
        # `ivr setup`) before it loads a module; it has no umask option, so its files
        # (recordings, CDR, logs) get 0660 / folders 0770 from this umask: nothing for other
        # users; the group (asterisk, which the controller's user joins) may write, because
        # the controller rebuilds each recording on the wall-clock timeline in its folder.
        if [ "$(resolve_mode)" = system ]; then
            umask 007
            exec asterisk -f -n -C "$conf"
        fi
        [ -f "$ROOT/.ivr-complete" ] || die "no Asterisk root at $ROOT: run 'deploy/asterisk.sh provision'"
        # A private mount namespace: the binds vanish with the process, whatever kills it.
        exec unshare --mount --propagation private -- /bin/sh -ec '
            root=$1; data=$2; conf=$3
            mount -t proc proc "$root/proc"
            mount --bind /dev "$root/dev"
            # The path down to DATA inside the root must stay traversable for Asterisk'"'"'s user.
            (umask 022; mkdir -p "$root$data")
            mount --bind "$data" "$root$data"
            umask 007
            exec chroot "$root" /usr/sbin/asterisk -f -n -C "$conf"
        ' sh "$ROOT" "$data" "$conf"
        ;;
    rx)
        conf=${2:?usage: rx CONF DATA CMD}; data=${3:?}; shift 3
        data=$(realpath "$data"); conf=$(realpath "$conf")
        if [ "$(resolve_mode)" = system ]; then
            exec asterisk -C "$conf" -rx "$*"
        fi
        # The control socket lives in DATA, which is the same path inside and outside the root,
        # but the client must run inside the root to read the same asterisk.conf.
        exec unshare --mount --propagation private -- /bin/sh -ec '
            root=$1; data=$2; conf=$3; shift 3
            (umask 022; mkdir -p "$root$data")
            mount --bind "$data" "$root$data"
            exec chroot "$root" /usr/sbin/asterisk -C "$conf" -rx "$*"
        ' sh "$ROOT" "$data" "$conf" "$@"
        ;;
    *)
        sed -n '2,14p' "$0" >&2
        exit 2
        ;;
esac

# Sourced by get-data.sh and get-postgresql.sh: apt_install LABEL PACKAGE installs a Debian
# package when this machine can (apt-get as root, or through passwordless sudo), saying so
# under LABEL; it returns non-zero where it cannot.
apt_install() {
    command -v apt-get >/dev/null 2>&1 || return 1
    if [ "$(id -u)" = 0 ]; then
        as_root=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        as_root="sudo -n"
    else
        return 1
    fi
    echo "$1: installing the Debian package $2"
    if $as_root apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq "$2" >/dev/null; then
        return 0
    fi
    echo "$1: apt-get could not install $2" >&2
    return 1
}

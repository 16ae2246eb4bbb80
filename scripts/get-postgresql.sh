#!/bin/sh
# Make PostgreSQL's server present for the tests of studies shared through a database:
# Debian's postgresql package, installed when this machine can. The tests start their own
# throwaway server with it; where it cannot be had they fail in CI and are skipped elsewhere.
set -u
. "$(dirname "$0")/apt.sh"
found() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }
if found || { apt_install postgresql postgresql && found; }; then
    echo "postgresql: found $(ls -d /usr/lib/postgresql/*/bin | tail -n 1)"
    exit 0
fi
echo "postgresql: not installed (needs apt-get as root); the tests that share a study through PostgreSQL are skipped outside CI"
exit 0

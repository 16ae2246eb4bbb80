#!/bin/sh
# Make the Debian package's copy of FashionMNIST (dataset-fashion-mnist) present when
# this machine can install it. fashionmlp itself then lays it out under its data root;
# where the package cannot be had, `fashionmlp train --download` uses torchvision's
# mirrors instead, and the library says so clearly if neither works.
set -u
DIR=/usr/share/datasets/fashion-mnist
have_all() {
    for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
        [ -f "$DIR/$name.gz" ] || return 1
    done
}
if have_all; then
    echo "dataset: found the Debian package's files in $DIR"
    exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        as_root=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        as_root="sudo -n"
    else
        as_root="none"
    fi
    if [ "$as_root" != none ]; then
        echo "dataset: installing the Debian package dataset-fashion-mnist"
        $as_root apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq dataset-fashion-mnist >/dev/null \
            && have_all && exit 0
        echo "dataset: apt-get could not install dataset-fashion-mnist" >&2
    fi
fi
echo "dataset: no Debian package here (needs apt-get as root); fashionmlp train --download will fetch it from torchvision's mirrors (needs internet)"
exit 0

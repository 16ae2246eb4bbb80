#!/bin/sh
# Make the Debian package's copy of FashionMNIST (dataset-fashion-mnist) present when
# this machine can install it. fashionmlp itself then lays it out under its data root;
# where the package cannot be had, `fashionmlp train --download` uses torchvision's
# mirrors instead, and the library says so clearly if neither works.
set -u
. "$(dirname "$0")/apt.sh"
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
if apt_install dataset dataset-fashion-mnist && have_all; then
    exit 0
fi
echo "dataset: no Debian package here (needs apt-get as root); fashionmlp train --download will fetch it from torchvision's mirrors (needs internet)"
exit 0

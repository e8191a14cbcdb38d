#!/usr/bin/env bash
# Make sure Fashion-MNIST is on disk (Debian package dataset-fashion-mnist), installing it when we are root.
set -euo pipefail
dir=${COMPAT_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [ -f "$dir/train-images-idx3-ubyte.gz" ] || [ -f "$dir/train-images-idx3-ubyte" ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "compat: installing Fashion-MNIST (apt-get install dataset-fashion-mnist)"
    (apt-get install -y -qq dataset-fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) >/dev/null
    exit 0
fi
echo "compat: Fashion-MNIST is not in $dir. Install it with 'sudo apt-get install dataset-fashion-mnist'," >&2
echo "or put the four IDX files in a folder and set COMPAT_FASHION_MNIST_DIR to it." >&2
exit 2

#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, then configures, builds and runs a downstream
# project that uses find_package(xgrad). Arguments: <build dir> <consumer source dir>.
set -euo pipefail
build=$1 src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
cmake -S "$src" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release > "$work/configure.log"
cmake --build "$work/build" > "$work/build.log"
LD_LIBRARY_PATH="$work/prefix/lib:${LD_LIBRARY_PATH:-}" "$work/build/consumer"
echo "consumer built against $work/prefix and ran: OK"

#!/usr/bin/env bash
# Stages in .device/ what the GPU machine lacks for building libmamba: OpenBLAS (from Debian packages,
# unpacked into .device/sysroot), the DLPack header and the GoogleTest sources. Run here, then carry
# .device with the run and build there with tools/device/build.sh (about 7 MB travel).
set -euo pipefail
top=$(git rev-parse --show-toplevel)
cd "$top"
mkdir -p .device
exclude="$(git rev-parse --git-common-dir)/info/exclude"; mkdir -p "$(dirname "$exclude")"
grep -qx '/.device/' "$exclude" 2>/dev/null || echo '/.device/' >> "$exclude"
if [ ! -f .device/sysroot.tar.xz ]; then
  tmp=$(mktemp -d)
  rm -rf .device/sysroot
  (cd "$tmp" && apt-get download libopenblas0-pthread libopenblas-pthread-dev libgfortran5 >/dev/null)
  for deb in "$tmp"/*.deb; do dpkg -x "$deb" .device/sysroot; done
  rm -rf "$tmp" .device/sysroot/usr/share
  # only the shared OpenBLAS and its headers travel: static and LAPACK libraries would exceed the size limit
  find .device/sysroot \( -name "*.a" -o -name "liblapack*" -o -name "*.pc" -o -name cmake \) -prune -exec rm -rf {} +
  tar -C .device/sysroot -cf - . | xz -T0 -6 > .device/sysroot.tar.xz
  rm -rf .device/sysroot
fi
mkdir -p .device/include/dlpack
cp /usr/include/dlpack/dlpack.h .device/include/dlpack/
rm -rf .device/googletest
cp -r /usr/src/googletest/googletest .device/googletest
du -sh .device

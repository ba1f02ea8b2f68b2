#!/usr/bin/env bash
# Release archives of slotagent, the layout the coder-slots module's default
# install_url expects (see terraform/render: DistArchive):
#
#   scripts/dist.sh VERSION [DIR]      (default DIR: dist)
#
#   DIR/slotagent_<version>_linux_amd64.tar.gz
#   DIR/slotagent_<version>_linux_arm64.tar.gz
#   DIR/SHA256SUMS
#
# <version> is VERSION without a leading "v". Each archive holds slotagent
# (static: CGO_ENABLED=0, version stamped), LICENSE and README.md. The
# archives are reproducible: sorted entries, fixed times and owners, gzip
# without a name or time.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:?usage: scripts/dist.sh VERSION [DIR]}
dir=${2:-dist}
plain=${version#v}
mkdir -p "$dir"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
sums=()
for arch in amd64 arm64; do
  mkdir -p "$stage/$arch"
  CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath \
    -ldflags "-s -w -X main.version=$version" -o "$stage/$arch/slotagent" ./agent/cmd/slotagent
  cp LICENSE README.md "$stage/$arch/"
  archive="slotagent_${plain}_linux_${arch}.tar.gz"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$stage/$arch" -cf - slotagent LICENSE README.md |
    gzip -n -9 >"$dir/$archive.tmp"
  mv "$dir/$archive.tmp" "$dir/$archive"
  sums+=("$archive")
done
(cd "$dir" && sha256sum "${sums[@]}" >SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
echo "dist: $(cd "$dir" && pwd)"
cat "$dir/SHA256SUMS"

#!/usr/bin/env bash
# Builds Keel's image with buildah, daemonless and without a container registry: a minimal Debian bookworm
# root from the Debian mirror (debootstrap --variant=minbase, cached), imported as the base, then Containerfile
# on top of it. Checks that `keel --version` runs inside the image. Needs root, buildah and debootstrap
# (apt-get install buildah debootstrap) and target/release/keel (cargo build --release -p keel-cli).
# Usage: deploy/build-image.sh [TAG]     (default localhost/keel:0.1.0); the image stays in buildah's store.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-localhost/keel:0.1.0}"
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
[ -x target/release/keel ] || { echo "build-image: build the binary first: cargo build --release -p keel-cli" >&2; exit 2; }
for t in buildah debootstrap; do
  command -v "$t" >/dev/null || { echo "build-image: $t is missing: apt-get install buildah debootstrap" >&2; exit 2; }
done
CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
root="$CACHE/debian-bookworm-minbase"
if [ ! -f "$root/.complete" ]; then
  rm -rf "$root"
  echo "build-image: debootstrap bookworm (minbase) into $root" >&2
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >&2
  rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
  touch "$root/.complete"
fi
base=localhost/keel-base:bookworm
if ! buildah inspect --type image "$base" >/dev/null 2>&1; then
  ctr=$(buildah from scratch)
  mnt=$(buildah mount "$ctr")
  tar -C "$root" --exclude=./.complete -cf - . | tar -C "$mnt" -xf -
  buildah umount "$ctr" >/dev/null
  buildah commit --quiet "$ctr" "$base" >/dev/null
  buildah rm "$ctr" >/dev/null
fi
buildah build --quiet --layers=false --build-arg BASE="$base" -f Containerfile -t "$tag" . >/dev/null
ctr=$(buildah from "$tag")
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
version=$(buildah run "$ctr" -- /usr/local/bin/keel --version)
echo "build-image: $tag built; inside it: $version" >&2
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$tag" >&2

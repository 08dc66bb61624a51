#!/usr/bin/env bash
# Build the local bake's container image once, and again only when its recipe changes.
#
# The base is the node test image (molecule/image/build.sh) when the checkout has it;
# otherwise Debian bookworm made here by debootstrap and `podman import`ed (no registry
# is needed, none may be reachable). The Containerfile beside this script adds sshd and
# sudo. The image carries a label with the hash of its recipe; a current one is kept.
#
#   packer/local/build-image.sh                 # build when missing or stale
#   TL_BAKE_IMAGE=localhost/x:y build-image.sh  # another name
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
image="${TL_BAKE_IMAGE:-localhost/tlops-bake:bookworm}"
mirror="${TL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
label=tlops.image.recipe
# debootstrap and reading its root-owned tree need root; podman itself may run rootless.
as_root=""
[ "$(id -u)" -eq 0 ] || as_root=sudo

for tool in podman; do
  if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null; then
    echo "build-image.sh: $tool is missing; \`make bake-image\` installs it" >&2
    exit 1
  fi
done

molecule_build="$repo/molecule/image/build.sh"
if [ -x "$molecule_build" ]; then
  # Its tag names the hash of its own recipe.
  base="${TL_NODE_IMAGE:-$("$molecule_build" --name)}"
  base_recipe="${base##*:}"
else
  base="localhost/tlops-bake-base:bookworm"
  base_recipe="debootstrap-minbase-bookworm"
fi
recipe="$(cat "$here/build-image.sh" "$here/Containerfile" | sha256sum | cut -c1-12)-$base_recipe"

current() {
  podman image exists "$1" \
    && [ "$(podman image inspect --format "{{ index .Labels \"$label\" }}" "$1")" = "$2" ]
}

# Two builds at once (two checkouts, two shells) would race on the same tags.
exec 9>"${TMPDIR:-/tmp}/tlops-bake-image.lock"
flock 9

if current "$image" "$recipe"; then
  echo "bake image $image is up to date (recipe $recipe)"
  exit 0
fi
started=$SECONDS

if [ -x "$molecule_build" ]; then
  [ -n "${TL_NODE_IMAGE:-}" ] || "$molecule_build" >/dev/null
elif ! current "$base" "$base_recipe"; then
  if ! PATH="$PATH:/usr/sbin:/sbin" command -v debootstrap >/dev/null; then
    echo "build-image.sh: debootstrap is missing; \`make bake-image\` installs it" >&2
    exit 1
  fi
  rootfs="$(mktemp -d "${TMPDIR:-/tmp}/tlops-bake-rootfs.XXXXXX")"
  trap '$as_root rm -rf "$rootfs"; rm -f "$rootfs.log"' EXIT
  echo "debootstrap bookworm from $mirror (about a minute)"
  $as_root env PATH="$PATH:/usr/sbin:/sbin" debootstrap --variant=minbase bookworm "$rootfs" "$mirror" \
    >"$rootfs.log" 2>&1 || { tail -20 "$rootfs.log" >&2; exit 1; }
  $as_root sh -c "rm -rf '$rootfs'/var/cache/apt/archives/*.deb '$rootfs'/var/lib/apt/lists/*"
  $as_root tar --numeric-owner -C "$rootfs" -c . \
    | podman import --quiet --change "LABEL $label=$base_recipe" - "$base" >/dev/null
fi

log="$(mktemp "${TMPDIR:-/tmp}/tlops-bake-image.XXXXXX.log")"
podman build --pull=never --build-arg "BASE=$base" --label "$label=$recipe" \
  -f "$here/Containerfile" -t "$image" "$here" >"$log" 2>&1 \
  || { tail -30 "$log" >&2; rm -f "$log"; exit 1; }
rm -f "$log"
echo "bake image $image built in $((SECONDS - started)) s (recipe $recipe)"

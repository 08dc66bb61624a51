#!/usr/bin/env bash
# Build the node test image once per recipe, and print its name.
#
# Debian bookworm made by debootstrap from Debian's mirror, `podman import`ed
# (no container registry is needed, none may be reachable), then the
# Containerfile beside this script: python3, systemd as PID 1, dbus. The tag
# is the hash of the recipe (this script and the Containerfile), so checkouts
# with different recipes on one machine each keep their own image, and none
# retags, rebuilds or removes another's. Nothing here removes an image: old
# recipes' images stay until `podman rmi` (`podman images localhost/tlops-node-test`).
#
#   molecule/image/build.sh            # build unless this recipe's image exists
#   molecule/image/build.sh --name     # only print its name
#   TL_DEBIAN_MIRROR=http://... build.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repository="${TL_NODE_IMAGE_REPOSITORY:-localhost/tlops-node-test}"
mirror="${TL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security_mirror="${TL_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
suite=bookworm
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/../containers.conf}"

recipe="$(cat "$here/build.sh" "$here/Containerfile" | sha256sum | cut -c1-12)"
image="$repository:$suite-$recipe"
base="$repository-base:$suite-$recipe"

if [ "${1:-}" = "--name" ]; then
  echo "$image"
  exit 0
fi

# Two builds at once (two shells, a make -j) would race on the same tags.
exec 9>"${TMPDIR:-/tmp}/tlops-node-image.lock"
flock 9

if podman image exists "$image"; then
  echo "node image $image is there" >&2
  echo "$image"
  exit 0
fi

for tool in debootstrap podman; do
  if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null; then
    echo "build.sh: $tool is missing; \`make node-image\` installs it" >&2
    exit 1
  fi
done

rootfs="$(mktemp -d "${TMPDIR:-/tmp}/tlops-rootfs.XXXXXX")"
trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT

started=$SECONDS
echo "debootstrap $suite from $mirror (about a minute)" >&2
PATH="$PATH:/usr/sbin:/sbin" debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" \
  >"$rootfs.log" 2>&1 || { tail -20 "$rootfs.log" >&2; exit 1; }
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

tar --numeric-owner -C "$rootfs" -c . | podman import --quiet - "$base" >/dev/null
podman build --pull=never \
  --build-arg "BASE=$base" --build-arg "MIRROR=$mirror" \
  --build-arg "SECURITY_MIRROR=$security_mirror" \
  --label "tlops.image.recipe=$recipe" --tag "$image" \
  --file "$here/Containerfile" "$here" \
  >"$rootfs.log" 2>&1 || { tail -20 "$rootfs.log" >&2; exit 1; }
# Its layers live on in the image; the name alone would only confuse.
podman untag "$base" >/dev/null 2>&1 || true
echo "node image $image built in $((SECONDS - started)) s" >&2
echo "$image"

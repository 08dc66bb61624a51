#!/usr/bin/env bash
# Run Molecule scenarios (`molecule test`) one after the other, and remove
# their containers whatever happens: a failed step, a crash of molecule itself
# (which then skips its own destroy), Ctrl-C or a CI time-out.
#
#   molecule/run.sh                    # every scenario, in the order below
#   molecule/run.sh nginx_tls watcher  # some of them
#
# `make test-molecule` builds the tools and the image first, then runs this.
# Each scenario's result and wall time is printed at the end; the exit status
# is 0 only when every scenario passed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

venv="${TL_MOLECULE_VENV:-.venv-molecule}"
if [ ! -x "$venv/bin/molecule" ]; then
  echo "run.sh: no molecule in $venv; run \`make test-molecule\` (it installs it)" >&2
  exit 2
fi
PATH="$(cd "$venv/bin" && pwd):$PATH"
export PATH
export CONTAINERS_CONF="${CONTAINERS_CONF:-$root/molecule/containers.conf}"
# This checkout's image (tagged by its recipe's hash: `make node-image` builds it).
TL_NODE_IMAGE="${TL_NODE_IMAGE:-$(molecule/image/build.sh --name)}"
export TL_NODE_IMAGE
# Every container of this run carries this id (molecule.yml's label), so the
# cleanup below removes this run's containers and nobody else's.
export TL_MOLECULE_RUN="${TL_MOLECULE_RUN:-$(date +%s)-$$}"
# What the containers get from the controller (molecule.yml's volumes): the CA
# bundle it trusts, which pip in a container needs where TLS to the package
# index is inspected on the way; and the directory pip's own configuration
# names for local wheels (the CPU build of torch that the vllm scenario needs).
export TL_MOLECULE_CA_BUNDLE="${TL_MOLECULE_CA_BUNDLE:-${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}}"
if [ -z "${TL_MOLECULE_WHEELS:-}" ]; then
  TL_MOLECULE_WHEELS="$(python3 -m pip config list 2>/dev/null \
    | sed -n "s/^[^=]*find-links='\(.*\)'$/\1/p" | head -n 1 || true)"
fi
if [ -z "$TL_MOLECULE_WHEELS" ] || [ ! -d "$TL_MOLECULE_WHEELS" ]; then
  TL_MOLECULE_WHEELS="${TMPDIR:-/tmp}/tlops-molecule-no-wheels"
  mkdir -p "$TL_MOLECULE_WHEELS"
fi
export TL_MOLECULE_WHEELS

# supervisor first (every other node role runs under it), then cheapest first, so a
# broken toolchain shows within a minute.
default_order=(supervisor cuda nginx_tls watcher idle_watchdog vllm)

remove_containers() {
  local ids
  ids="$(podman ps --all --quiet --filter "label=tlops.molecule.run=$TL_MOLECULE_RUN" 2>/dev/null || true)"
  if [ -n "$ids" ]; then
    # shellcheck disable=SC2086  # one id per word
    podman rm --force --time 0 $ids >/dev/null 2>&1 || true
  fi
}
trap remove_containers EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! podman image exists "$TL_NODE_IMAGE"; then
  echo "run.sh: no image $TL_NODE_IMAGE; run \`make node-image\`" >&2
  exit 2
fi

if [ "$#" -gt 0 ]; then
  scenarios=("$@")
else
  scenarios=()
  for name in "${default_order[@]}"; do
    [ -f "molecule/$name/molecule.yml" ] && scenarios+=("$name")
  done
  # Any scenario not named above runs last, so none is forgotten.
  for file in molecule/*/molecule.yml; do
    name="$(basename "$(dirname "$file")")"
    case " ${scenarios[*]} " in *" $name "*) ;; *) scenarios+=("$name") ;; esac
  done
fi

results=()
passed=0
failed=0
for name in "${scenarios[@]}"; do
  if [ ! -f "molecule/$name/molecule.yml" ]; then
    echo "run.sh: no scenario molecule/$name" >&2
    results+=("$(printf '%-14s %-7s %5s' "$name" missing -)")
    failed=$((failed + 1))
    continue
  fi
  echo "=== molecule test -s $name"
  started=$SECONDS
  if molecule test --scenario-name "$name"; then
    outcome=passed
    passed=$((passed + 1))
  else
    outcome=failed
    failed=$((failed + 1))
  fi
  # A crashed molecule leaves its container behind: never let it reach the next one.
  remove_containers
  results+=("$(printf '%-14s %-7s %4d s' "$name" "$outcome" $((SECONDS - started)))")
done

echo
echo "scenario       result   wall"
printf '%s\n' "${results[@]}"
echo "molecule: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

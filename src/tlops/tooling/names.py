"""The shared names' YAML side: `playbooks/group_vars/all/names.yml`, generated from
`tlops.contract.names` (`make names`, or `python -m tlops.tooling.names --write`).

Ansible loads a playbook directory's `group_vars/all/` for every play of the
playbooks beside it, so the cloud roles read `tlops_names.<name>` without a
`vars_files` line. `--check` fails when the file drifts (a test runs it). The
node roles keep literal defaults (Molecule runs them alone, and a role's
defaults are its interface); tests/playbooks/test_one_home.py holds those, and
Packer's and access.yml's spellings, equal to the Python ones.
"""

from __future__ import annotations

import argparse
import json
import sys

from tlops import checkout
from tlops.contract import names
from tlops.tooling import generated

NAMES_FILE = checkout.ROOT / "playbooks" / "group_vars" / "all" / "names.yml"
HEADER = (
    "---\n"
    "# Generated from src/tlops/contract/names.py by `make names`; do not edit by hand.\n"
    "# The names the code, the roles, Packer and the policies spell alike.\n"
)


def rendered() -> str:
    """The file's text: every value double-quoted (an id such as 099720109477 stays a
    string under any YAML reader)."""
    lines = [f"  {key}: {json.dumps(value)}" for key, value in sorted(names.for_yaml().items())]
    return HEADER + "tlops_names:\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tlops.tooling.names", description=__doc__)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help=f"rewrite {NAMES_FILE.name}")
    action.add_argument("--check", action="store_true", help="exit 1 when it differs")
    args = parser.parse_args(argv)
    return generated.write_or_check(
        NAMES_FILE, rendered(), write=args.write, source="tlops.contract.names", target="names"
    )


if __name__ == "__main__":
    sys.exit(main())

"""Role files read the way Ansible reads its own: the strings in them may be templates.

Ansible (2.19 and later) renders only strings it trusts; a test that renders a role's
defaults, vars or task arguments with Ansible's Templar marks them first.
"""

from __future__ import annotations

from typing import Any

from ansible.template import trust_as_template


def trusted(value: Any) -> Any:
    """`value` with every string in it marked as a template Ansible may render."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {key: trusted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [trusted(item) for item in value]
    return value

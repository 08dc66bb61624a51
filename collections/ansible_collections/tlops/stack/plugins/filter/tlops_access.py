# Apache-2.0. IAM policies rendered from access.yml (the one access declaration).
"""`tlops_policy`: a component's IAM policy document, rendered from access.yml.

    policy_json: "{{ 'router' | tlops_policy({'region': aws_region, ...}) | to_json }}"

The rendering is `tlops.checks.access.render_policy`, the same code the tests
and playbooks/verify.yml judge the deployed policies with, so a role's policy
cannot drift from the declaration.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def tlops_policy(component, context):
    from tlops.checks import access

    try:
        components = access.load()
        if component not in components:
            raise access.AccessError(f"access.yml declares no component {component!r}")
        return access.render_policy(components[component], dict(context))
    except access.AccessError as exc:
        raise AnsibleFilterError(f"access.yml: {exc}") from None


class FilterModule:
    def filters(self):
        return {"tlops_policy": tlops_policy}

# Apache-2.0. The router role's routes, from openapi.yaml (the one route table).
"""`tlops_routes`: openapi.yaml's routed operations in tl_http_api's `routes` shape.

    routes: "{{ lookup('ansible.builtin.file', playbook_dir ~ '/../openapi.yaml')
      | from_yaml | tlops_routes }}"

The parsing is `tlops.tooling.routes`, the same code that generates the router's
dispatch table, so the deployed HTTP API, the router and the local gateway
cannot disagree about a route.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def tlops_routes(spec):
    from tlops.tooling.routes import RouteTableError, http_api_routes

    try:
        return http_api_routes(spec)
    except RouteTableError as exc:
        raise AnsibleFilterError(f"openapi.yaml: {exc}") from None


class FilterModule:
    def filters(self):
        return {"tlops_routes": tlops_routes}

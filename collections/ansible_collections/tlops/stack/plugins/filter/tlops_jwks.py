# Apache-2.0. The router's signing keys, compacted for its configuration.
"""`tlops_compact_jwks`: a JWKS document (JSON text or dict) reduced to what the router
verifies with, as the compact JSON the router reads from `TL_JWKS`.

The router runs in a subnet with no route to the pool's public JWKS URL, so the
deploy writes the keys into its environment (docs/decisions.md); the reduction is
`tlops.edge.auth.compact_jwks`, the same module that reads them back.
"""

from __future__ import annotations

import json

from ansible.errors import AnsibleFilterError


def tlops_compact_jwks(document):
    from tlops.edge.auth import compact_jwks

    try:
        parsed = json.loads(document) if isinstance(document, str | bytes) else dict(document)
        return compact_jwks(parsed)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"not a JWKS document: {exc}") from None


class FilterModule:
    def filters(self):
        return {"tlops_compact_jwks": tlops_compact_jwks}

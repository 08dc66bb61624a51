# Apache-2.0. Saved Logs Insights queries from observability/queries/.
"""`tlops_queries`: the query definitions the observability role saves, from the query files.

    {{ observability_queries_dir | tlops_queries(log_groups, project_tag) }}

The files are read by `tlops.tooling.queries`, the parser `tlops local logs query` uses too.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def tlops_queries(directory, log_groups, prefix):
    from tlops.tooling import queries

    try:
        return queries.definitions(directory, log_groups, prefix)
    except queries.QueryFileError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    def filters(self):
        return {"tlops_queries": tlops_queries}

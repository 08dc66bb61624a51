# Part of tl_dashboard (plugins/modules/tl_dashboard.py). Apache-2.0.
"""A CloudWatch dashboard with its owner's mark: compare the body, write it, delete only ours.

CloudWatch cannot tag a dashboard (TagResource takes alarms and Contributor Insights
rules only), so the module writes the tags where a dashboard can carry them: a text
widget of its own, below the given ones, that says who manages it and lists the tags.
state=absent deletes a dashboard only when that widget names every tag given.
"""

from __future__ import annotations

import json
import re

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    ClientError,
    Failure,
    is_not_found,
)

MARK_PREFIX = "Managed by tinyllama-ops"
_MARK_TAGS = re.compile(r"Tags: (.*)$")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
# What CloudWatch's body schema accepts at the top level.
_TOP_LEVEL = {"widgets", "start", "end", "periodOverride", "variables"}
MAX_WIDGETS = 500


def check(params):
    """The body as a dict, checked the way PutDashboard would (the stand-in checks less)."""
    name = params["name"]
    if not _NAME.match(name):
        raise Failure(f"name {name!r}: 1-255 of A-Z, a-z, 0-9, '-' and '_'")
    if params["state"] == "absent":
        return None
    body = params["body"]
    if body is None:
        raise Failure("body is required when state=present")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError as exc:
            raise Failure(f"body is not JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("widgets"), list):
        raise Failure("body must be an object with a list of widgets")
    unknown = set(body) - _TOP_LEVEL
    if unknown:
        raise Failure(f"body has keys CloudWatch refuses: {', '.join(sorted(unknown))}")
    if not 0 < len(body["widgets"]) < MAX_WIDGETS:
        raise Failure(f"body needs 1 to {MAX_WIDGETS - 1} widgets (one more is the owner's mark)")
    for index, widget in enumerate(body["widgets"]):
        if not isinstance(widget, dict) or "type" not in widget or "properties" not in widget:
            raise Failure(f"widgets[{index}] needs a type and properties")
    return body


def mark(tags):
    """The text widget naming the owner and the tags."""
    listed = ", ".join(f"{key}={value}" for key, value in sorted((tags or {}).items()))
    return {
        "type": "text",
        "width": 24,
        "height": 1,
        "properties": {
            "markdown": f"{MARK_PREFIX} (deploy.yml writes this dashboard; edits here are "
            f"overwritten). Tags: {listed}"
        },
    }


def with_mark(body, tags):
    """The body to write: the given widgets, then the mark placed below all of them."""
    widgets = [w for w in body["widgets"] if not is_mark(w)]
    bottom = max((int(w.get("y", 0)) + int(w.get("height", 6)) for w in widgets), default=0)
    return {**body, "widgets": [*widgets, {**mark(tags), "x": 0, "y": bottom}]}


def is_mark(widget):
    text = (widget.get("properties") or {}).get("markdown", "")
    return widget.get("type") == "text" and text.startswith(MARK_PREFIX)


def marked_tags(body):
    """The tags a dashboard's mark lists; None without a mark (not ours)."""
    for widget in (body or {}).get("widgets", []):
        if is_mark(widget):
            found = _MARK_TAGS.search(widget["properties"]["markdown"])
            pairs = [p.strip() for p in (found.group(1) if found else "").split(",") if p.strip()]
            return dict(pair.partition("=")[::2] for pair in pairs)
    return None


def read(client, name):
    """(arn, body) of the dashboard, or None."""
    try:
        found = client.get_dashboard(DashboardName=name, aws_retry=True)
    except ClientError as exc:
        if is_not_found(exc, "ResourceNotFound"):
            return None
        raise
    try:
        body = json.loads(found.get("DashboardBody") or "{}")
    except ValueError:
        body = {"unreadable": found.get("DashboardBody")}
    return found.get("DashboardArn"), body


def ensure_present(client, params, check_mode, warn):
    desired = with_mark(check(params), params["tags"])
    name = params["name"]
    current = read(client, name)
    before = current[1] if current else None
    arn = current[0] if current else None
    changed = before != desired
    if changed and not check_mode:
        answer = client.put_dashboard(
            DashboardName=name, DashboardBody=json.dumps(desired, sort_keys=True), aws_retry=True
        )
        for message in answer.get("DashboardValidationMessages") or []:
            warn(f"dashboard {name}: CloudWatch says {message.get('DataPath', '')}: "
                 f"{message.get('Message', '')}")  # fmt: skip
        found = read(client, name)
        arn = found[0] if found else arn
    return dict(changed=changed, before=before, after=desired, dashboard_name=name,
                dashboard_arn=arn, body=desired)  # fmt: skip


def ensure_absent(client, params, check_mode, warn):
    name = params["name"]
    current = read(client, name)
    if current is None:
        return dict(changed=False, before=None, after=None, dashboard_name=name,
                    dashboard_arn=None)  # fmt: skip
    arn, body = current
    tags = marked_tags(body)
    wanted = params["tags"] or {}
    if tags is None or any(tags.get(k) != v for k, v in wanted.items()):
        warn(
            f"dashboard {name} was left alone: it does not carry this module's mark with "
            f"{', '.join(f'{k}={v}' for k, v in sorted(wanted.items()))} (someone else's)"
        )
        return dict(changed=False, before=body, after=body, dashboard_name=name,
                    dashboard_arn=arn)  # fmt: skip
    if not check_mode:
        client.delete_dashboards(DashboardNames=[name], aws_retry=True)
    return dict(changed=True, before=body, after=None, dashboard_name=name, dashboard_arn=arn)

# Part of tl_lambda (plugins/modules/tl_lambda.py). Apache-2.0.
"""The input of tl_lambda, checked (a Failure names the option), and what it asks for."""

from __future__ import annotations

import re

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import Failure
from ansible_collections.tlops.stack.plugins.module_utils.tl_lambda.read import READ

ALIAS_NAME = re.compile(r"(?!^[0-9]+$)[a-zA-Z0-9_-]{1,128}")


def validate(params):
    if params["keep_versions"] < 1:
        raise Failure("keep_versions must be at least 1 (the version the alias points to is kept)")
    if not ALIAS_NAME.fullmatch(params["alias"]):
        raise Failure(
            f"alias {params['alias']!r} is not a valid alias name: letters, digits, - and _, "
            "not only digits"
        )
    validate_waits(params)
    if params["rollback"] and params["state"] == "absent":
        raise Failure("rollback applies to state=present: drop rollback or state=absent")
    if params["state"] == "absent" or params["rollback"]:
        return
    for option in ("source", "role_arn"):
        if not params[option]:
            raise Failure(f"{option} is required when state=present (and rollback is false)")
    if not 128 <= params["memory_size"] <= 10240:
        raise Failure(f"memory_size {params['memory_size']} is outside 128..10240 MB")
    if not 1 <= params["timeout"] <= 900:
        raise Failure(f"timeout {params['timeout']} is outside 1..900 seconds")
    if bool(params["vpc_subnet_ids"]) != bool(params["vpc_security_group_ids"]):
        raise Failure(
            "vpc_subnet_ids and vpc_security_group_ids go together: give both to run the "
            "function in a VPC, or neither"
        )
    for key, value in (params["environment"] or {}).items():
        if not isinstance(value, str):
            raise Failure(
                f"environment.{key} is a {type(value).__name__}, Lambda takes strings: quote it"
            )


def validate_waits(params):
    if params["wait_timeout"] < 1:
        raise Failure("wait_timeout must be at least 1 second")
    if not 0 <= params["propagation_timeout"] <= 600:
        raise Failure(
            f"propagation_timeout {params['propagation_timeout']} is outside 0..600 seconds"
        )


def desired_configuration(params, current=None):
    """The managed fields as asked; unmanaged ones (None) keep `current`'s value."""
    desired = {key: params[key] for key in READ}
    for key in ("vpc_subnet_ids", "vpc_security_group_ids"):
        desired[key] = sorted(desired[key] or [])
    for key in ("environment", "description"):
        if desired[key] is None:
            desired[key] = (current or {}).get(key, {} if key == "environment" else "")
    return desired

"""Deploying to a local stack's stand-in the way an operator does: deploy.yml, for real."""

from __future__ import annotations

from tlops import playbooks
from tlops.local.stack import LocalStack


def deploy(stack: LocalStack) -> dict:
    """`ansible-playbook playbooks/deploy.yml` against `stack`; returns the deploy outputs."""
    done = playbooks.run("deploy.yml", env=stack.env(), capture=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    outputs = stack.outputs()
    assert outputs.get("user_pool_id"), "deploy.yml wrote no outputs to the stack's state dir"
    return outputs

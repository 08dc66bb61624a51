"""What the deployment costs: the idle bill (`idle`), priced with playbooks/vars/prices.yml.

Runs on the operator's machine, for `tlops cost` and for the `tl_idle_cost` module of
status.yml and teardown.yml. (Cost Explorer's figures are `tlops.guard.costs`: a Lambda's.)
"""

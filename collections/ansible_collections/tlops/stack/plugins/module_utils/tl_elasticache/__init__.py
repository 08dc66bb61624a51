# Part of tl_elasticache (plugins/modules/tl_elasticache.py). Apache-2.0.
"""tl_elasticache's code, by step: validate (the input), read (what ElastiCache holds, as
views), parts (the subnet and parameter groups), apply (the replication group's calls and
waits), states (present and absent)."""

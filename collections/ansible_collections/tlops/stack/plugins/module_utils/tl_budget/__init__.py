# Part of tl_budget (plugins/modules/tl_budget.py). Apache-2.0.
"""tl_budget's code, by step: validate (the input), read (what AWS Budgets holds),
apply (the calls planned and made), states (present and absent)."""

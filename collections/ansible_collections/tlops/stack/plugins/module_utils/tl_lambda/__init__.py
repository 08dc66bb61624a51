# Part of tl_lambda (plugins/modules/tl_lambda.py). Apache-2.0.
"""tl_lambda's code, by step: validate (the input), build (the zip), read (what Lambda holds),
apply (the calls that change a function), states (present, rollback, absent); propagation
(the retries while Lambda refuses a role IAM has not propagated yet)."""

# Part of tl_cognito (plugins/modules/tl_cognito.py). Apache-2.0.
"""tl_cognito's code, by step: validate (the input), read (what Cognito holds, as views),
apply (the requests and plans), states (present and absent)."""

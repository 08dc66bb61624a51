# Part of tl_http_api (plugins/modules/tl_http_api.py). Apache-2.0.
"""tl_http_api's code, by step: validate (the input), shapes (requests and views), read (what
API Gateway and Lambda hold), apply (the steps that change them), states (present, absent)."""

# Part of tl_lambda (plugins/modules/tl_lambda.py). Apache-2.0.
"""The function's zip, built by the tlops package of the project's virtual environment."""

from __future__ import annotations

from pathlib import Path

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import Failure

try:
    from tlops.tooling import lambda_zip as packaging
except ImportError:  # reported when a zip must be built: not the project's interpreter
    packaging = None


def build_code(params):
    if packaging is None:
        raise Failure(
            "tl_lambda needs the tlops package, which this Python lacks: run the module with "
            "the project's .venv (ansible_python_interpreter=.venv/bin/python; `make setup` "
            "creates it)"
        )
    source = Path(params["source"])
    source = source if source.is_absolute() else Path.cwd() / source
    try:
        return packaging.build_source_zip(
            source, handler=params["handler"], runtime=params["runtime"]
        )
    except packaging.PackagingError as exc:
        raise Failure(f"cannot package {params['name']}: {exc}") from None

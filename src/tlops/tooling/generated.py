"""A generated file kept in the repository: written by `make <target>`, checked by a test.

The route table (`routes`) and the shared names' YAML (`names`) are such files: the
generator knows the wanted text, and this writes it, or says that the file in the tree
differs from it.
"""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(path: Path, wanted: str, *, write: bool, source: str, target: str) -> int:
    """With `write`, replace `path` by `wanted` where it differs; otherwise exit status 1
    (and a line naming `source` and `make <target>`) when it differs, else 0."""
    current = path.read_text() if path.exists() else ""
    if write:
        if wanted != current:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(wanted)
        return 0
    if wanted != current:
        print(f"{path} differs from {source}: run `make {target}`", file=sys.stderr)
        return 1
    return 0

"""The checkout this package runs from: the repository root (src layout, installed
editable by `make setup`), where the playbooks, access.yml and the price table live.
The Lambdas and the node never use it: their zips and wheel hold no checkout."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

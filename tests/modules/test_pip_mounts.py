"""The local bake's container gets this machine's pip configuration as read-only mounts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FILTER = REPO / "collections/ansible_collections/tlops/stack/plugins/filter/tlops_pip.py"
spec = importlib.util.spec_from_file_location("tlops_pip", FILTER)
tlops_pip = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tlops_pip)

DEBUG = """env_var:
  PIP_CERT='/etc/ssl/certs/bundle.crt'
  PIP_DEFAULT_TIMEOUT='180'
env:
global:
  /etc/xdg/pip/pip.conf, exists: True
    global.constraint: /etc/xdg/pip/constraints.txt
  /etc/pip.conf, exists: False
site:
  /venv/pip.conf, exists: True
    global.find-links: /venv/only-here
user:
  /home/op/.pip/pip.conf, exists: False
  /home/op/.config/pip/pip.conf, exists: True
    global.find-links: /srv/wheels
    global.extra-index-url: file:///srv/pypi/simple https://mirror.example/simple
"""


def test_config_files_and_the_paths_they_name_are_mounted():
    present = {"/etc/ssl/certs/bundle.crt", "/etc/xdg/pip/constraints.txt", "/srv/wheels",
               "/srv/pypi", "/venv/only-here"}  # fmt: skip
    mounts = tlops_pip.tlops_pip_mounts(DEBUG, exists=present.__contains__)
    assert mounts == [
        "/etc/ssl/certs/bundle.crt:/etc/ssl/certs/bundle.crt",
        "/etc/xdg/pip/constraints.txt:/etc/xdg/pip/constraints.txt",
        "/etc/xdg/pip/pip.conf:/etc/xdg/pip/pip.conf",
        # a user's configuration goes where root's pip reads it
        "/home/op/.config/pip/pip.conf:/root/.config/pip/pip.conf",
        # a file:// index from its root: its pages link to root/files/, beside simple/
        "/srv/pypi:/srv/pypi",
        "/srv/wheels:/srv/wheels",
    ]


def test_missing_paths_urls_and_the_controllers_venv_are_left_out():
    mounts = tlops_pip.tlops_pip_mounts(DEBUG, exists=lambda path: False)
    assert mounts == [
        "/etc/xdg/pip/pip.conf:/etc/xdg/pip/pip.conf",
        "/home/op/.config/pip/pip.conf:/root/.config/pip/pip.conf",
    ]
    assert tlops_pip.tlops_pip_mounts("") == []

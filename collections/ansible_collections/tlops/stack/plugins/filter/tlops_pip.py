# Apache-2.0. The local bake's container sees this machine's pip configuration.
"""`tlops_pip_mounts`: what `pip config debug` names on this machine, as read-only mounts
("HOST:CONTAINER") for the local bake's container.

The node roles install vLLM with pip inside the container. Where this machine reaches
packages only through its own pip configuration (local wheel folders, file:// indexes, a
constraint file, a CA bundle for a proxy), the container must see the same: each config
file that exists (a user's at root's place, since the roles run pip as root) and every
absolute path, or file:// URL, its values or PIP_* variables name, at the same path. A
file:// index ending in /simple is mounted from the folder above it: a simple index's
pages link to the files beside it (root/simple/<name>/ links to root/files/...), and
pip reads them there. Nothing is copied into the image: mounts are not committed.
"""

from __future__ import annotations

import os
import re

_FILE = re.compile(r"^\s+(/\S+), exists: True$")
_SECTION = re.compile(r"^(env_var|env|global|site|user):$")
_VALUE = re.compile(r"^\s+(?:[\w.-]+: |PIP_\w+=)(.+)$")


def tlops_pip_mounts(config_debug, root_home="/root", exists=os.path.exists):
    mounts, section = {}, None
    user_config = os.path.join(root_home, ".config", "pip", "pip.conf")
    for line in str(config_debug).splitlines():
        if heading := _SECTION.match(line):
            section = heading.group(1)
            continue
        if section == "site":  # the controller's own venv: not the container's pip
            continue
        if found := _FILE.match(line):
            mounts[found.group(1)] = user_config if section == "user" else found.group(1)
            continue
        if value := _VALUE.match(line):
            for word in value.group(1).strip("'\"").split():
                path = word.removeprefix("file://")
                if word.startswith("file://") and os.path.basename(path.rstrip("/")) == "simple":
                    path = os.path.dirname(path.rstrip("/"))
                if path.startswith("/") and exists(path):
                    mounts.setdefault(path, path)
    return [f"{host}:{container}" for host, container in sorted(mounts.items())]


class FilterModule:
    def filters(self):
        return {"tlops_pip_mounts": tlops_pip_mounts}

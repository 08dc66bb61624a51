"""Drive the `packer` binary: a build with a timeout, its output streamed line by line to the
caller, and the artifact its manifest names.

A thin wrapper over `subprocess`, on purpose. The two Python packages that exist do not fit:

- python-packer 0.1.2 (2016) is broken on Python 3: it reports a failed build as a success
  (its errors are not raised), it always passes `-parallel=true`, a flag that Packer 1.6.6
  refuses, and it mixes bytes and str when it reads the output.
- packer.py 0.3.0 works, but forces `-machine-readable` output (CSV records, unreadable as a
  log) and has no timeout: a build stuck on an SSH wait blocks its caller forever.

What this module adds over a bare `subprocess.run`:

- **the output as it comes**: every line goes to `on_line` while packer runs (bake_ami.yml
  writes it to a log that `tail -f` follows), the last lines are kept for the error;
- **a timeout that cleans up**: past it, packer gets SIGINT, its own Ctrl-C, which stops the
  build and deletes what it made (instance, key pair, security group); whatever is still
  running `grace_s` later is killed with its whole process group;
- **variables in the environment** (`PKR_VAR_<name>`), never on the command line, where
  `ps` would show a sensitive one, and checked against the template's declarations first:
  Packer ignores an undeclared `PKR_VAR_` without a word;
- **the artifact**, read from a manifest written to a fresh path for this run only, so an
  older build's entry can never be mistaken for this one's;
- **Packer 1.6.6** (Debian's, the only one installable here): `stage` gives it a copy of the
  template without what it predates (the `packer {}` block of `plugins.pkr.hcl`, the
  `metadata_options` block and `temporary_security_group_source_public_ip` of amazon-ebs),
  next to links to everything else the template's folder sits beside, so `${path.root}/..`
  still finds the repository. Such a copy is fine to validate and to build the local bake
  from, never to build amazon-ebs from: that instance would answer IMDSv1 and open SSH to
  the whole internet, so `build` refuses it.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

PLUGINS_FILE = "plugins.pkr.hcl"
# The first Packer that reads `packer { required_plugins }` and amazon-ebs' metadata_options.
FIRST_WITH_PLUGINS = (1, 7, 0)
MANIFEST_VARIABLE = "manifest_path"
TAIL_LINES = 40
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")
_DECLARED = re.compile(r'^\s*variable\s+"([^"]+)"', re.MULTILINE)
# A metadata_options block (comments just above it included): 1.6.6's amazon-ebs lacks it.
_METADATA_BLOCK = re.compile(r"\n(?:[ \t]*#[^\n]*\n)*[ \t]*metadata_options\s*\{[^{}]*\}\n")
# The amazon plugin's "SSH from this machine's address only" (plugin releases; 1.6.6 lacks it).
_PUBLIC_IP_SETTING = re.compile(r"^[ \t]*temporary_security_group_source_public_ip\s*=.*\n", re.M)
_AMAZON_SOURCE = re.compile(r'^\s*source\s+"amazon-ebs"\s+"([^"]+)"', re.MULTILINE)

LineSink = Callable[[str], None]


class PackerError(RuntimeError):
    """packer failed, or could not be run; `tail` holds the last lines it printed."""

    def __init__(self, message: str, tail: Sequence[str] = ()):
        super().__init__(message)
        self.tail = list(tail)

    def __str__(self) -> str:
        message = super().__str__()
        if not self.tail:
            return message
        return message + "\n" + "\n".join(f"  | {line}" for line in self.tail[-15:])


class PackerTimeout(PackerError):
    """packer ran past its timeout and was interrupted."""


@dataclasses.dataclass(frozen=True)
class Artifact:
    """One build's entry in the manifest."""

    name: str
    builder_type: str
    artifact_id: str
    custom_data: dict[str, str]
    run_uuid: str

    @property
    def images(self) -> dict[str, str]:
        """region → AMI id, for an amazon-ebs artifact ("eu-west-1:ami-0abc,us-east-1:ami-…")."""
        found = {}
        for part in self.artifact_id.split(","):
            region, _, image = part.partition(":")
            if image.startswith("ami-"):
                found[region] = image
        return found

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "images": self.images}


# --- the binary ---------------------------------------------------------------
def find(binary: str = "packer") -> str:
    found = shutil.which(binary)
    if found is None:
        raise PackerError(
            f"{binary} is not installed or not on PATH: `make setup` installs Debian's packer"
        )
    return found


def base_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment packer runs with: the caller's, no update check, no colours."""
    return {**os.environ, **(env or {}), "CHECKPOINT_DISABLE": "1", "PACKER_NO_COLOR": "1"}


def version(binary: str = "packer") -> tuple[int, int, int]:
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [find(binary), "version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=base_env(),
        )
    except subprocess.TimeoutExpired as exc:
        raise PackerError(f"`{binary} version` did not answer within 30 s") from exc
    match = _VERSION.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise PackerError(f"`{binary} version` gave no version", done.stdout.splitlines())
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


# --- the template -------------------------------------------------------------
def declared_variables(template_dir: Path) -> set[str]:
    return {
        name
        for path in sorted(Path(template_dir).glob("*.pkr.hcl"))
        for name in _DECLARED.findall(path.read_text())
    }


def stage(template_dir: Path, packer_version: tuple[int, int, int], into: Path) -> Path:
    """The template as this packer can read it: itself from 1.7 on; for an older one, a copy
    under `into` without the `packer {}` block's file and amazon-ebs' metadata_options and
    source_public_ip, beside links to everything else the template's parent holds (so
    `${path.root}/..` resolves)."""
    template_dir = Path(template_dir).resolve()
    if packer_version >= FIRST_WITH_PLUGINS:
        return template_dir
    staged = Path(into) / template_dir.name
    shutil.copytree(template_dir, staged, ignore=shutil.ignore_patterns(PLUGINS_FILE))
    for path in staged.glob("*.pkr.hcl"):
        text = _METADATA_BLOCK.sub("\n", path.read_text())
        path.write_text(_PUBLIC_IP_SETTING.sub("", text))
    for sibling in template_dir.parent.iterdir():
        if sibling.name != template_dir.name:
            (Path(into) / sibling.name).symlink_to(sibling)
    return staged


def variable_env(variables: Mapping[str, Any]) -> dict[str, str]:
    """PKR_VAR_<name> for each value: strings as they are, everything else as JSON (which
    Packer reads as an HCL expression, like a -var value of a non-string type)."""
    env = {}
    for name, value in variables.items():
        text = value if isinstance(value, str) else json.dumps(value)
        env[f"PKR_VAR_{name}"] = text
    return env


def check_buildable(
    template_dir: Path, packer_version: tuple[int, int, int], only: Sequence[str]
) -> None:
    """Refuse to build amazon-ebs with a packer older than the plugins: its staged copy has
    lost IMDSv2 and the SSH restriction, and the builder opens port 22 to 0.0.0.0/0 when it
    is given no range. An `only` entry that could name an amazon-ebs source (by its type, its
    name or a glob) counts as building it; no `only` builds every source."""
    if packer_version >= FIRST_WITH_PLUGINS:
        return
    amazon_names = {
        name
        for path in Path(template_dir).glob("*.pkr.hcl")
        for name in _AMAZON_SOURCE.findall(path.read_text())
    }
    if not amazon_names:
        return
    if only and not any(
        "amazon-ebs" in entry
        or any(glob in entry for glob in "*?[")
        or entry.rsplit(".", 1)[-1] in amazon_names
        for entry in only
    ):
        return
    raise PackerError(
        f"Packer {'.'.join(map(str, packer_version))} cannot build amazon-ebs safely (no "
        "IMDSv2, SSH open to the internet): use Packer >= 1.7 with `packer init packer/`, "
        "or build only the local bake (only=node.null.local)"
    )


def _check_declared(template_dir: Path, variables: Mapping[str, Any]) -> None:
    unknown = sorted(set(variables) - declared_variables(template_dir))
    if unknown:
        raise PackerError(
            f"the template in {template_dir} declares no variable {', '.join(unknown)}: "
            "check the name against its variables.pkr.hcl"
        )


# --- running it ---------------------------------------------------------------
def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 3600,
    grace_s: float = 300,
    on_line: LineSink | None = None,
) -> list[str]:
    """Run packer to its end, each output line to `on_line` as it comes; the last lines back.

    Raises PackerTimeout past `timeout` (after SIGINT, then SIGKILL to its process group if
    it is not gone `grace_s` later) and PackerError for a non-zero exit."""
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    process = subprocess.Popen(  # noqa: S603 - argv from the caller, no shell
        list(argv),
        cwd=cwd,
        env=base_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
        start_new_session=True,
    )

    def pump() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            if on_line is not None:
                on_line(line)

    reader = threading.Thread(target=pump, name="packer-output", daemon=True)
    reader.start()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _interrupt(process, grace_s)
        reader.join(timeout=5)
        raise PackerTimeout(
            f"packer {argv[1] if len(argv) > 1 else ''} ran past its timeout of {timeout:g} s "
            "and was interrupted (it cleans up what it made on SIGINT)",
            tail,
        ) from None
    except BaseException:  # KeyboardInterrupt, SystemExit: never leave a build running
        _interrupt(process, grace_s)
        raise
    # A grandchild that kept the pipe open must not hold us here.
    reader.join(timeout=10)
    if process.returncode != 0:
        raise PackerError(f"packer {argv[1]} failed (exit code {process.returncode})", tail)
    return list(tail)


def _interrupt(process: subprocess.Popen, grace_s: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    # Whatever packer left behind in its session (ansible-playbook, ssh, a script) goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def init(template_dir: Path, *, binary: str = "packer", timeout: float = 600) -> list[str]:
    """`packer init`: installs the pinned plugins (Packer >= 1.7; nothing to do before)."""
    path = find(binary)
    if version(path) < FIRST_WITH_PLUGINS:
        return []
    return run([path, "init", str(template_dir)], timeout=timeout)


def validate(
    template_dir: Path,
    *,
    variables: Mapping[str, Any] | None = None,
    binary: str = "packer",
    timeout: float = 120,
) -> list[str]:
    """`packer validate` of the template as this packer reads it."""
    variables = dict(variables or {})
    _check_declared(template_dir, variables)
    with _staged_template(template_dir, binary) as (path, staged):
        return run([path, "validate", str(staged)], env=variable_env(variables), timeout=timeout)


def fmt_check(template_dir: Path, *, binary: str = "packer") -> list[str]:
    """The files `packer fmt` would rewrite (empty when the template is formatted)."""
    path = find(binary)
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [path, "fmt", "-check", str(template_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=base_env(),
    )
    if done.returncode not in (0, 3):
        raise PackerError("packer fmt -check failed", (done.stdout + done.stderr).splitlines())
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


@contextlib.contextmanager
def _staged_template(template_dir: Path, binary: str) -> Iterator[tuple[str, Path]]:
    path = find(binary)
    with tempfile.TemporaryDirectory(prefix="tlops-packer-") as scratch:
        into = Path(scratch)
        yield path, stage(template_dir, version(path), into)


def build(
    template_dir: Path,
    *,
    only: Sequence[str] = (),
    variables: Mapping[str, Any] | None = None,
    timeout: float = 3600,
    grace_s: float = 300,
    on_line: LineSink | None = None,
    env: Mapping[str, str] | None = None,
    binary: str = "packer",
) -> list[Artifact]:
    """`packer build` to the end; the artifacts of this run, as its manifest names them.

    The template must declare a `manifest_path` variable and hand it to its manifest
    post-processor: this run's manifest is written to a fresh file. A build that made no
    artifact (an `only` that matched no source) is an error, not a success."""
    variables = dict(variables or {})
    template_dir = Path(template_dir)
    if MANIFEST_VARIABLE not in declared_variables(template_dir):
        raise PackerError(
            f"the template in {template_dir} declares no {MANIFEST_VARIABLE} variable: "
            "its manifest post-processor must write where the wrapper says"
        )
    _check_declared(template_dir, variables)
    with tempfile.TemporaryDirectory(prefix="tlops-packer-") as scratch:
        manifest = Path(scratch) / "manifest.json"
        path = find(binary)
        packer_version = version(path)
        check_buildable(template_dir, packer_version, only)
        staged = stage(template_dir, packer_version, Path(scratch) / "template")
        argv = [path, "build", "-color=false", "-on-error=cleanup"]
        argv += [f"-only={','.join(only)}"] if only else []
        tail = run(
            [*argv, str(staged)],
            env={**(env or {}), **variable_env({**variables, MANIFEST_VARIABLE: str(manifest)})},
            timeout=timeout,
            grace_s=grace_s,
            on_line=on_line,
        )
        artifacts = read_manifest(manifest)
    if not artifacts:
        raise PackerError(
            f"packer build made no artifact (only={','.join(only) or 'all'}: does it name a "
            "source of the template, such as node.null.local?)",
            tail,
        )
    return artifacts


def read_manifest(path: Path) -> list[Artifact]:
    """The manifest's entries of its last run (none when there is no manifest)."""
    try:
        manifest = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return []
    last = manifest.get("last_run_uuid")
    return [
        Artifact(
            name=entry.get("name", ""),
            builder_type=entry.get("builder_type", ""),
            artifact_id=entry.get("artifact_id", ""),
            custom_data=dict(entry.get("custom_data") or {}),
            run_uuid=entry.get("packer_run_uuid", ""),
        )
        for entry in manifest.get("builds", [])
        if entry.get("packer_run_uuid") == last
    ]


# --- command line -------------------------------------------------------------
def _parse_vars(pairs: Sequence[str]) -> dict[str, str]:
    variables = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--var wants NAME=VALUE, got {pair!r}")
        variables[name] = value
    return variables


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tlops.tooling.packer", description=__doc__)
    parser.add_argument("action", choices=["validate", "fmt-check", "build"])
    parser.add_argument("template_dir", type=Path)
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--only", action="append", default=[], metavar="BUILD.TYPE.NAME")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds (build)")
    args = parser.parse_args(argv)
    try:
        if args.action == "fmt-check":
            unformatted = fmt_check(args.template_dir)
            for name in unformatted:
                print(f"not formatted: {name} (run packer fmt)")
            return 1 if unformatted else 0
        variables = _parse_vars(args.var)
        if args.action == "validate":
            for line in validate(args.template_dir, variables=variables):
                print(line)
            return 0
        artifacts = build(
            args.template_dir,
            only=args.only,
            variables=variables,
            timeout=args.timeout,
            on_line=lambda line: print(line, flush=True),
        )
        print(json.dumps([artifact.as_dict() for artifact in artifacts]))
        return 0
    except PackerError as exc:
        print(f"packer: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""Deterministic Lambda zips: a function's source directory, the parts of `tlops` it imports,
pure-Python deps.

Every file of the function's source directory is shipped (templates, data, helper
modules alike), `__pycache__` aside. The handler's import graph is found
statically (modulefinder, which also sees imports inside functions), so a
lazily imported module of `tlops` or of a dependency is shipped too. What the
Lambda python3.12 runtime already provides (boto3 and its dependencies) is
left out, and so are optional imports a dependency only tries (PyJWT tries
`cryptography`). A native extension anywhere in the result is refused: a zip
built on the operator's machine must run on Lambda's, whatever its CPU.

Same inputs give the same bytes: entries sorted, timestamps and permissions
fixed, and bytecode compiled with unchecked-hash invalidation (no mtimes) in a
fresh interpreter with a fixed hash seed (marshal's output depends on the
reference counts of the compiling process and on set ordering, so bytecode
compiled inside a busy process differs from run to run), so `CodeSha256` only
changes when code does. Shipping `__pycache__` matters on
Lambda: its filesystem is read-only, so without it every cold start compiles
every module again. Bytecode is only compiled when the interpreter building
the zip is the runtime's Python version (a .pyc is version-specific).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import modulefinder
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path
from typing import NamedTuple

from tlops import checkout

LAMBDA_SRC = checkout.ROOT / "lambda_src"
SRC = checkout.ROOT / "src"
RUNTIME_PYTHON = (3, 12)
DEFAULT_RUNTIME = "python3.12"
DEFAULT_HANDLER = "handler.lambda_handler"
ZIP_LIMIT_BYTES = 5 * 1024 * 1024  # our own ceiling; Lambda allows 50 MiB zipped
# In the python3.12 Lambda runtime already; shipping them would only add weight.
RUNTIME_PROVIDED = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six"}
)
# Optional imports that dependencies try and do without (native code we refuse to ship).
OPTIONAL_EXCLUDED = frozenset({"cryptography"})
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_NATIVE_SUFFIXES = (".so", ".pyd", ".dylib")
_SKIPPED_DIRS = frozenset({"__pycache__"})
_PURE_PYTHON = (
    "a Lambda zip must be pure Python: use a pure-Python alternative, "
    "or a Lambda layer built for the runtime"
)


class PackagingError(Exception):
    """The function cannot be packaged as asked; the message says what to change."""


class ZipReport(NamedTuple):
    path: Path
    size: int
    files: int
    packages: tuple[str, ...]  # third-party top-level packages shipped


class ZipBuild(NamedTuple):
    """A built zip in memory."""

    data: bytes
    files: int
    packages: tuple[str, ...]  # third-party top-level packages shipped

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def code_sha256(self) -> str:
        return code_sha256(self.data)


def code_sha256(data: bytes) -> str:
    """What Lambda reports as `CodeSha256`: the base64 of the SHA-256 of the zip's bytes."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _is_native(name: str) -> bool:
    return name.endswith(_NATIVE_SUFFIXES) or ".so." in name  # libfoo.so.1 too


def _stdlib_dirs() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    return tuple(Path(paths[key]).resolve() for key in ("stdlib", "platstdlib"))


def _third_party_root(module_file: Path) -> Path | None:
    """The site-packages dir holding `module_file`, if it is a third-party module."""
    for parent in module_file.parents:
        if parent.name in ("site-packages", "dist-packages"):
            return parent
    return None


def runtime_version(runtime: str) -> tuple[int, int]:
    """(3, 12) for "python3.12"; PackagingError for anything but a Python runtime."""
    match = re.fullmatch(r"python(\d+)\.(\d+)", runtime)
    if not match:
        raise PackagingError(
            f"runtime {runtime!r} is not a Python runtime; this builder packages "
            "Python functions only: use e.g. python3.12"
        )
    return int(match[1]), int(match[2])


def handler_file(source: Path, handler: str) -> Path:
    """The file of the handler's module: "handler.lambda_handler" → source/handler.py."""
    module, _, function = handler.rpartition(".")
    if not module or not function:
        raise PackagingError(
            f"handler {handler!r} is not <module>.<function>: use e.g. {DEFAULT_HANDLER}"
        )
    base = source.joinpath(*module.split("."))
    for candidate in (base.with_name(base.name + ".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    raise PackagingError(
        f"handler {handler!r} needs {base.with_name(base.name + '.py')} and there is no such "
        f"file: put the handler module in {source} or fix the handler setting"
    )


def _source_files(source: Path) -> dict[str, Path]:
    """arcname → file for every file of the source directory but `__pycache__`."""
    files: dict[str, Path] = {}
    for root, dirs, names in os.walk(source):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS)
        for name in sorted(names):
            path = Path(root) / name
            arcname = path.relative_to(source).as_posix()
            if _is_native(name):
                raise PackagingError(
                    f"{path} is a native library; {_PURE_PYTHON}: remove it from {source}"
                )
            if path.is_file():
                files[arcname] = path
    return files


def _is_stdlib(path: Path, stdlib: tuple[Path, ...]) -> bool:
    return _third_party_root(path) is None and any(path.is_relative_to(d) for d in stdlib)


class _Finder(modulefinder.ModuleFinder):
    """A ModuleFinder that does not scan the standard library's own imports: the runtime has
    its standard library, and scanning it is most of the time (seconds) for nothing."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._stdlib = _stdlib_dirs()

    def load_module(self, fqname, fp, pathname, file_info):
        is_package = file_info[2] == modulefinder._PKG_DIRECTORY
        if pathname and not is_package and _is_stdlib(Path(pathname).resolve(), self._stdlib):
            module = self.add_module(fqname)
            module.__file__ = pathname
            return module
        return super().load_module(fqname, fp, pathname, file_info)


def _collect(handler: Path, source: Path) -> tuple[dict[str, Path], set[str]]:
    """arcname → file for the parts of tlops the handler imports; the third-party packages."""
    finder = _Finder(
        path=[str(source), str(SRC), *sys.path],
        excludes=sorted(RUNTIME_PROVIDED | OPTIONAL_EXCLUDED),
    )
    finder.run_script(str(handler))
    stdlib = _stdlib_dirs()
    source = source.resolve()
    src = SRC.resolve()
    files: dict[str, Path] = {}
    packages: set[str] = set()
    for name, module in finder.modules.items():
        if not module.__file__:
            continue  # built-in
        path = Path(module.__file__).resolve()
        if _is_stdlib(path, stdlib):
            continue  # the runtime has its own standard library
        third_party = _third_party_root(path)
        if _is_native(path.name):
            raise PackagingError(f"{name} is a native extension ({path}); {_PURE_PYTHON}")
        if path.is_relative_to(source):
            continue  # shipped with the whole source directory
        if path.is_relative_to(src):
            files[path.relative_to(src).as_posix()] = path
        elif third_party is not None:
            packages.add(path.relative_to(third_party).parts[0].removesuffix(".py"))
    return files, packages


def _package_files(top: str) -> dict[str, Path]:
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin is None:
        raise PackagingError(f"dependency {top!r} is not installed in {sys.prefix}")
    origin = Path(spec.origin).resolve()
    if spec.submodule_search_locations is None:
        return {origin.name: origin}
    base = origin.parent
    out = {}
    for path in sorted(base.rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        if _is_native(path.name):
            raise PackagingError(f"{top} ships a native extension ({path}); {_PURE_PYTHON}")
        out[(Path(top) / path.relative_to(base)).as_posix()] = path
    return out


# Compiles (source, arcname, target) triples given as JSON; run in a fresh interpreter.
_COMPILE = """
import json, py_compile, sys
for source, arcname, target in json.loads(sys.stdin.read()):
    py_compile.compile(source, cfile=target, dfile=arcname, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""


def _compile_all(sources: dict[str, Path]) -> dict[str, bytes]:
    """arcname → bytecode of each source, compiled in one fresh interpreter: no user site,
    an environment of its own (-I would also drop the fixed PYTHONHASHSEED)."""
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [
            (str(path), arcname, str(Path(tmp) / f"{index}.pyc"))
            for index, (arcname, path) in enumerate(sorted(sources.items()))
        ]
        done = subprocess.run(  # noqa: S603 - this interpreter, fixed script
            [sys.executable, "-s", "-c", _COMPILE],
            input=json.dumps(jobs),
            capture_output=True,
            text=True,
            env={"PYTHONHASHSEED": "0", "PATH": os.environ.get("PATH", "")},
            check=False,
        )
        if done.returncode != 0:
            raise PackagingError(f"cannot compile the function's code: {done.stderr[-2000:]}")
        return {arcname: Path(target).read_bytes() for _, arcname, target in jobs}


def _write(archive: zipfile.ZipFile, arcname: str, data: bytes) -> None:
    info = zipfile.ZipInfo(arcname, date_time=_FIXED_TIME)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data, compresslevel=9)


def _largest(archive_bytes: bytes, count: int = 3) -> str:
    with zipfile.ZipFile(io.BytesIO(archive_bytes)) as archive:
        infos = sorted(archive.infolist(), key=lambda i: (-i.compress_size, i.filename))
    return ", ".join(f"{i.filename} ({i.compress_size / 2**20:.1f} MiB)" for i in infos[:count])


def build_source_zip(
    source: Path,
    *,
    handler: str = DEFAULT_HANDLER,
    runtime: str = DEFAULT_RUNTIME,
    compile_bytecode: bool = True,
) -> ZipBuild:
    """The zip for the function whose code is the directory `source`; PackagingError if it
    cannot be built (no handler module, native code, over ZIP_LIMIT_BYTES)."""
    source = Path(source)
    if not source.is_dir():
        raise PackagingError(f"source {source} is not a directory: give the function's directory")
    target = runtime_version(runtime)
    entry = handler_file(source, handler)
    files = _source_files(source)
    imported, packages = _collect(entry, source)
    for arcname, path in imported.items():
        files.setdefault(arcname, path)  # the function's own copy wins, as on its sys.path
    for top in sorted(packages):
        for arcname, path in _package_files(top).items():
            files.setdefault(arcname, path)
    with_bytecode = compile_bytecode and sys.version_info[:2] == target
    entries = {arcname: path.read_bytes() for arcname, path in files.items()}
    if with_bytecode:
        sources = {arcname: path for arcname, path in files.items() if path.suffix == ".py"}
        for arcname, code in _compile_all(sources).items():
            path = Path(arcname)
            cached = path.parent / "__pycache__" / f"{path.stem}.{sys.implementation.cache_tag}.pyc"
            entries[cached.as_posix()] = code
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for arcname in sorted(entries):
            _write(archive, arcname, entries[arcname])
    data = buffer.getvalue()
    if len(data) > ZIP_LIMIT_BYTES:
        raise PackagingError(
            f"the zip of {source} would be {len(data) / 2**20:.1f} MiB, over the "
            f"{ZIP_LIMIT_BYTES // 2**20} MiB limit (largest: {_largest(data)}): drop "
            "dependencies or large files from the source directory, or move them to a layer"
        )
    return ZipBuild(data, len(entries), tuple(sorted(packages)))


def build_function_zip(function: str, out: Path, *, compile_bytecode: bool = True) -> ZipReport:
    """Build `out` for lambda_src/<function>/handler.py; raise PackagingError if it cannot."""
    source = LAMBDA_SRC / function
    if not (source / "handler.py").is_file():
        raise PackagingError(f"no handler at {(source / 'handler.py').relative_to(checkout.ROOT)}")
    built = build_source_zip(source, compile_bytecode=compile_bytecode)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(built.data)
    return ZipReport(out, built.size, built.files, built.packages)

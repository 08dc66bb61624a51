"""Deterministic Lambda zips: the handler, the parts of `tlops` it imports, pure-Python deps.

The import graph is found statically (modulefinder, which also sees imports
inside functions), so a lazily imported module is shipped too. What the Lambda
python3.12 runtime already provides (boto3 and its dependencies) is left out,
and so are optional imports a dependency only tries (PyJWT tries
`cryptography`). A native extension anywhere in the result is refused: a zip
built on the operator's machine must run on Lambda's, whatever its CPU.

Same inputs give the same bytes: entries sorted, timestamps and permissions
fixed, and bytecode compiled with unchecked-hash invalidation (no mtimes), so
`CodeSha256` only changes when code does. Shipping `__pycache__` matters on
Lambda: its filesystem is read-only, so without it every cold start compiles
every module again.
"""

from __future__ import annotations

import importlib.util
import io
import modulefinder
import py_compile
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path
from typing import NamedTuple

REPO_ROOT = Path(__file__).resolve().parents[2]
LAMBDA_SRC = REPO_ROOT / "lambda_src"
SRC = REPO_ROOT / "src"
RUNTIME_PYTHON = (3, 12)
ZIP_LIMIT_BYTES = 5 * 1024 * 1024  # our own ceiling; Lambda allows 50 MiB zipped
# In the python3.12 Lambda runtime already; shipping them would only add weight.
RUNTIME_PROVIDED = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six"}
)
# Optional imports that dependencies try and do without (native code we refuse to ship).
OPTIONAL_EXCLUDED = frozenset({"cryptography"})
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_NATIVE_SUFFIXES = (".so", ".pyd", ".dylib")


class PackagingError(Exception):
    """The function cannot be packaged as asked; the message says what to change."""


class ZipReport(NamedTuple):
    path: Path
    size: int
    files: int
    packages: tuple[str, ...]  # third-party top-level packages shipped


def _stdlib_dirs() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    return tuple(Path(paths[key]).resolve() for key in ("stdlib", "platstdlib"))


def _third_party_root(module_file: Path) -> Path | None:
    """The site-packages dir holding `module_file`, if it is a third-party module."""
    for parent in module_file.parents:
        if parent.name in ("site-packages", "dist-packages"):
            return parent
    return None


def _collect(handler: Path) -> tuple[dict[str, Path], set[str]]:
    """arcname → file for the handler's own code and tlops; the third-party packages used."""
    finder = modulefinder.ModuleFinder(
        path=[str(handler.parent), str(SRC), *sys.path],
        excludes=sorted(RUNTIME_PROVIDED | OPTIONAL_EXCLUDED),
    )
    finder.run_script(str(handler))
    stdlib = _stdlib_dirs()
    files: dict[str, Path] = {}
    packages: set[str] = set()
    for name, module in finder.modules.items():
        if not module.__file__:
            continue  # built-in
        path = Path(module.__file__).resolve()
        if path.suffix in _NATIVE_SUFFIXES and _third_party_root(path) is not None:
            raise PackagingError(
                f"{name} is a native extension ({path.name}); a Lambda zip must be pure "
                "Python: use a pure-Python alternative or a Lambda layer built for the runtime"
            )
        if any(path.is_relative_to(d) for d in stdlib) and _third_party_root(path) is None:
            continue
        if path == handler.resolve():
            files[handler.name] = path
        elif path.is_relative_to(handler.parent.resolve()):
            files[str(path.relative_to(handler.parent.resolve()))] = path
        elif path.is_relative_to(SRC.resolve()):
            files[str(path.relative_to(SRC.resolve()))] = path
        elif (root := _third_party_root(path)) is not None:
            packages.add(path.relative_to(root).parts[0].removesuffix(".py"))
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
        if path.suffix in _NATIVE_SUFFIXES:
            raise PackagingError(
                f"{top} ships a native extension ({path.name}); a Lambda zip must be pure Python"
            )
        out[str(Path(top) / path.relative_to(base))] = path
    return out


def _pyc(source: Path, arcname: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "out.pyc"
        py_compile.compile(
            str(source),
            cfile=str(target),
            dfile=arcname,
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        return target.read_bytes()


def _write(archive: zipfile.ZipFile, arcname: str, data: bytes) -> None:
    info = zipfile.ZipInfo(arcname, date_time=_FIXED_TIME)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data, compresslevel=9)


def build_function_zip(function: str, out: Path, *, compile_bytecode: bool = True) -> ZipReport:
    """Build `out` for lambda_src/<function>/handler.py; raise PackagingError if it cannot."""
    handler = LAMBDA_SRC / function / "handler.py"
    if not handler.is_file():
        raise PackagingError(f"no handler at {handler.relative_to(REPO_ROOT)}")
    files, packages = _collect(handler)
    for top in sorted(packages):
        files.update(_package_files(top))
    with_bytecode = compile_bytecode and sys.version_info[:2] == RUNTIME_PYTHON
    entries: dict[str, bytes] = {}
    for arcname, path in files.items():
        entries[arcname] = path.read_bytes()
        if with_bytecode and path.suffix == ".py":
            cached = (
                Path(arcname).parent
                / "__pycache__"
                / f"{path.stem}.{sys.implementation.cache_tag}.pyc"
            )
            entries[str(cached)] = _pyc(path, arcname)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for arcname in sorted(entries):
            _write(archive, arcname, entries[arcname])
    data = buffer.getvalue()
    if len(data) > ZIP_LIMIT_BYTES:
        raise PackagingError(
            f"{function}.zip would be {len(data) / 2**20:.1f} MiB, over the "
            f"{ZIP_LIMIT_BYTES // 2**20} MiB limit: drop dependencies or move them to a layer"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return ZipReport(out, len(data), len(entries), tuple(sorted(packages)))

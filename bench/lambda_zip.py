"""Size and shape of the Lambda zips: bytes, files, dependencies, native code, determinism.

Builds each function twice and compares the bytes (same inputs must give the
same zip, or every deploy would publish a new version). Baseline in the same
run: the same router zip without bytecode, and the size it would have with
redis-py in place of the small RESP client. Figures, not a test.

    .venv/bin/python bench/lambda_zip.py
"""

from __future__ import annotations

import hashlib
import platform
import tempfile
import time
import zipfile
from pathlib import Path

from tlops.tooling.lambda_zip import LAMBDA_SRC, build_function_zip

GOAL_BYTES = 1024 * 1024


def native_files(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return [n for n in archive.namelist() if n.endswith((".so", ".pyd", ".dylib"))]


def redis_py_size() -> int:
    """Compressed size of the redis package (what shipping redis-py would add)."""
    import redis

    base = Path(redis.__file__).parent
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "redis.zip"
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(base.rglob("*.py")):
                archive.write(file, file.relative_to(base.parent))
        return out.stat().st_size


def main() -> None:
    print(
        f"# Lambda zips, {platform.node()}, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        for function in sorted(p.name for p in LAMBDA_SRC.iterdir() if (p / "handler.py").exists()):
            first = build_function_zip(function, tmp_path / f"{function}-1.zip")
            second = build_function_zip(function, tmp_path / f"{function}-2.zip")
            same = (
                hashlib.sha256(first.path.read_bytes()).digest()
                == hashlib.sha256(second.path.read_bytes()).digest()
            )
            print(
                f"{function:14} {first.size / 1024:7.1f} KiB  {first.files:4} files  "
                f"native: {len(native_files(first.path))}  deterministic: {same}  "
                f"deps: {', '.join(first.packages) or '-'}  "
                f"({first.size / GOAL_BYTES:.0%} of the 1 MiB goal)"
            )
        bare = build_function_zip("router", tmp_path / "router-nopyc.zip", compile_bytecode=False)
        print(f"router without __pycache__: {bare.size / 1024:.1f} KiB (baseline)")
        print(f"redis-py alone would add:   {redis_py_size() / 1024:.1f} KiB compressed")


if __name__ == "__main__":
    main()

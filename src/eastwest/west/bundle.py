"""Job bundles: the runner and a project's jobs, content-addressed, as they travel to a hub.

A bundle is a set of files (``eastwest/__init__.py``, ``eastwest/west/*.py`` and ``jobs/*.py``).
Its digest is the SHA-256 of its sorted ``path sha256`` lines, so the same code always has the same
digest and any changed byte gives another. It travels as a one-chunk Arrow dataset (path, sha256,
content) through the transfer engine like any data, and a hub unpacks it into
``<root>/bundles/<digest>/`` only after every file hashed to what the bundle says. Before a job
runs, the hub hashes the installed bundle again; a bundle whose files changed is refused.
Standard library only, except :func:`to_table` / :func:`from_batches`, which need pyarrow.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from eastwest.west.protocol import SHA256_HEX

IGNORED = ("__pycache__",)


class BundleError(ValueError):
    """A bundle whose files are not the ones its digest names."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_of(files: dict[str, str]) -> str:
    """The bundle digest of ``{path: sha256}``."""
    lines = "".join(f"{path} {sha}\n" for path, sha in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def collect(jobs_dir: Path) -> dict[str, bytes]:
    """The bundle's files for a project's jobs package: the western runner plus every job module."""
    west_dir = Path(__file__).resolve().parent
    files: dict[str, bytes] = {"eastwest/__init__.py": (west_dir.parent / "__init__.py").read_bytes()}
    for path in sorted(west_dir.glob("*.py")):
        files[f"eastwest/west/{path.name}"] = path.read_bytes()
    jobs = Path(jobs_dir)
    if not jobs.is_dir():
        raise BundleError(f"jobs package {jobs} does not exist")
    files["jobs/__init__.py"] = (jobs / "__init__.py").read_bytes() if (jobs / "__init__.py").exists() else b""
    for path in sorted(jobs.glob("*.py")):
        files[f"jobs/{path.name}"] = path.read_bytes()
    return files


def describe(files: dict[str, bytes]) -> dict[str, str]:
    return {path: sha256_bytes(data) for path, data in files.items()}


def _safe_relpath(path: str) -> bool:
    parts = path.split("/")
    return (
        bool(path)
        and not path.startswith("/")
        and all(p not in ("", ".", "..") and not p.startswith(".") for p in parts)
        and parts[0] in ("eastwest", "jobs")
        and path.endswith(".py")
    )


def scan(directory: Path) -> dict[str, str]:
    """``{path: sha256}`` of every file under ``directory`` (``__pycache__`` counts as a foreign file)."""
    found = {}
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file() or path.is_symlink():
            found[path.relative_to(directory).as_posix()] = sha256_bytes(path.read_bytes())
    return found


def verify_installed(root: Path, digest: str) -> Path:
    """The directory of installed bundle ``digest`` after re-hashing every file; raise if it changed."""
    if not SHA256_HEX.fullmatch(digest):
        raise BundleError(f"{digest!r} is not a bundle digest")
    directory = Path(root) / "bundles" / digest
    if not directory.is_dir():
        raise FileNotFoundError(f"bundle {digest[:12]} is not installed on this hub")
    files = scan(directory)
    if digest_of(files) != digest:
        raise BundleError(
            f"bundle {digest[:12]} on this hub was modified after it was installed "
            f"({len(files)} files no longer hash to its digest); the east will ship it again after "
            "the hub's operator removes the directory"
        )
    return directory


def install(root: Path, expected: str, files: dict[str, bytes]) -> Path:
    """Write verified ``files`` as bundle ``expected`` (temp dir, then rename); idempotent."""
    for path in files:
        if not _safe_relpath(path):
            raise BundleError(f"bundle file name {path[:80]!r} is not allowed")
    actual = digest_of(describe(files))
    if actual != expected:
        raise BundleError(f"bundle content hashes to {actual[:12]}, not the announced {expected[:12]}")
    bundles = Path(root) / "bundles"
    target = bundles / expected
    if target.is_dir():
        try:
            return verify_installed(root, expected)
        except BundleError:
            shutil.rmtree(target)  # damaged: replace it with the verified copy
    bundles.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=bundles, prefix=f".{expected[:12]}.", suffix=".partial"))
    try:
        for path, data in files.items():
            out = tmp / path
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
        os.rename(tmp, target)
    except FileExistsError:  # a concurrent install won; keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return verify_installed(root, expected)


def to_table(files: dict[str, bytes]) -> Any:
    """The bundle as an Arrow table (path, sha256, content) to ship as a dataset."""
    import pyarrow as pa

    paths = sorted(files)
    return pa.table(
        {
            "path": pa.array(paths, pa.string()),
            "sha256": pa.array([sha256_bytes(files[p]) for p in paths], pa.string()),
            "content": pa.array([files[p] for p in paths], pa.binary()),
        }
    )


def from_batches(batches: Iterable[Any]) -> dict[str, bytes]:
    """The files of a shipped bundle dataset, each checked against its own digest."""
    files: dict[str, bytes] = {}
    for batch in batches:
        data = batch.to_pydict()
        for path, sha, content in zip(data["path"], data["sha256"], data["content"], strict=True):
            if sha256_bytes(content) != sha:
                raise BundleError(f"bundle file {path[:80]!r} does not hash to its digest")
            files[path] = content
    return files

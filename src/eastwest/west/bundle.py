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

import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from eastwest.west.protocol import SHA256_HEX

#: One part of a bundle file's path: a plain file or package name (``__init__.py`` included).
PATH_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


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
    """Only ``eastwest/…/*.py`` and ``jobs/*.py`` with plain names (so ``path sha`` lines stay unambiguous)."""
    parts = path.split("/")
    return parts[0] in ("eastwest", "jobs") and path.endswith(".py") and all(PATH_PART.fullmatch(p) for p in parts)


def scan(directory: Path) -> dict[str, str]:
    """``{path: sha256}`` of every regular file under ``directory``.

    Anything else (a symlink, a device, a FIFO, ``__pycache__`` or any other extra directory with
    no file of the bundle in it) raises :class:`BundleError`: a verified bundle is exactly its files.
    """
    found = {}
    directories = set()
    for top, dirs, files in os.walk(directory, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(top) / name
            relative = path.relative_to(directory).as_posix()
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode):
                directories.add(relative)
            elif stat.S_ISREG(mode):
                found[relative] = sha256_bytes(path.read_bytes())
            else:
                raise BundleError(f"bundle holds {relative!r}, which is not a regular file")
    implied = {"/".join(p.split("/")[:i]) for p in found for i in range(1, p.count("/") + 1)}
    extra = sorted(directories - implied)
    if extra:
        raise BundleError(f"bundle holds a directory that is not part of it: {extra[0]!r}")
    return found


def verify_installed(root: Path, digest: str) -> Path:
    """The directory of installed bundle ``digest`` after re-hashing every file; raise if it changed."""
    if not SHA256_HEX.fullmatch(digest):
        raise BundleError(f"{digest!r} is not a bundle digest")
    directory = Path(root) / "bundles" / digest
    try:
        mode = os.lstat(directory).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"bundle {digest[:12]} is not installed on this hub") from None
    if not stat.S_ISDIR(mode):
        raise BundleError(f"bundle {digest[:12]} on this hub is not a plain directory")
    try:
        files = scan(directory)
    except BundleError as exc:
        raise BundleError(f"bundle {digest[:12]} on this hub was modified after it was installed: {exc}") from None
    if digest_of(files) != digest:
        raise BundleError(
            f"bundle {digest[:12]} on this hub was modified after it was installed "
            f"({len(files)} files no longer hash to its digest); the next run that ships it replaces it"
        )
    os.utime(directory)  # recently used: kept by cleanup
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
    if os.path.lexists(target):
        try:
            return verify_installed(root, expected)
        except BundleError:  # damaged: move it aside (a job may still run from it), install a fresh copy
            os.rename(target, bundles / f".{expected[:12]}.damaged.{time.time_ns()}")
    bundles.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=bundles, prefix=f".{expected[:12]}.", suffix=".partial"))
    try:
        for path, data in files.items():
            out = tmp / path
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.rename(tmp, target)
    except OSError as exc:  # a concurrent install of the same bundle won: verify theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
    return verify_installed(root, expected)


def collect_garbage(root: Path, keep_hours: float) -> int:
    """Remove bundles nobody used for ``keep_hours`` and leftovers of failed installs; return how many."""
    bundles = Path(root) / "bundles"
    if not bundles.is_dir():
        return 0
    cutoff = time.time() - keep_hours * 3600
    removed = 0
    for entry in bundles.iterdir():
        if os.lstat(entry).st_mtime < cutoff:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
    return removed


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
        if not {"path", "sha256", "content"} <= set(batch.schema.names):
            raise BundleError(
                f"the dataset has columns {', '.join(batch.schema.names)[:200]}, not path, sha256, content"
            )
        data = batch.to_pydict()
        for path, sha, content in zip(data["path"], data["sha256"], data["content"], strict=True):
            if not isinstance(path, str) or not _safe_relpath(path):
                raise BundleError(f"bundle file name {str(path)[:80]!r} is not allowed")
            if not isinstance(content, bytes) or sha256_bytes(content) != sha:
                raise BundleError(f"bundle file {path[:80]!r} does not hash to its digest")
            files[path] = content
    return files

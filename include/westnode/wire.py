"""The wire format shared by east and west: compressed Arrow IPC streams with a manifest.

A dataset travels as one Arrow IPC *stream* (record batches, zstd-compressed buffers). Its manifest
records the SHA-256 of the exact bytes, the byte count and the row count; both sides compute all
three independently and a file is renamed to its final name only when they agree.

This module depends on pyarrow and the standard library only, so it runs on a western node
without Airflow.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

CHUNK = 1 << 20
COMPRESSION = "zstd"
SUFFIX = ".arrows"


class VerificationError(Exception):
    """The bytes or rows that arrived are not the ones that were sent."""


@dataclass(frozen=True)
class Manifest:
    """What a dataset file is: its digest, size in bytes and row count."""

    sha256: str
    bytes: int
    rows: int
    raw_bytes: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        return cls(
            sha256=str(data["sha256"]),
            bytes=int(data["bytes"]),
            rows=int(data["rows"]),
            raw_bytes=int(data.get("raw_bytes", 0)),
        )

    def check_against(self, other: Manifest, *, what: str) -> None:
        """Raise :class:`VerificationError` unless digest, size and rows all match ``other``."""
        problems = [
            f"{field} {getattr(self, field)} != {getattr(other, field)}"
            for field in ("sha256", "bytes", "rows")
            if getattr(self, field) != getattr(other, field)
        ]
        if problems:
            raise VerificationError(f"{what}: " + "; ".join(problems))


class HashingWriter:
    """A write-only file object that hashes and counts everything passed through to ``sink``."""

    def __init__(self, sink: IO[bytes] | Any) -> None:
        self._sink = sink
        self._hash = hashlib.sha256()
        self.bytes = 0
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        self._hash.update(view)
        self._sink.write(view)
        self.bytes += len(view)
        return len(view)

    def flush(self) -> None:
        if hasattr(self._sink, "flush"):
            self._sink.flush()

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def write_stream(batches: Iterable[Any], schema: Any, sink: IO[bytes] | Any) -> Manifest:
    """Write record batches to ``sink`` as a compressed Arrow IPC stream; return its manifest.

    Batches are written one at a time, so memory stays at one batch whatever the dataset size.
    """
    import pyarrow as pa

    writer_sink = HashingWriter(sink)
    rows = raw = 0
    options = pa.ipc.IpcWriteOptions(compression=COMPRESSION)
    with pa.ipc.new_stream(writer_sink, schema, options=options) as writer:
        for batch in batches:
            writer.write_batch(batch)
            rows += batch.num_rows
            raw += batch.nbytes
    return Manifest(sha256=writer_sink.sha256, bytes=writer_sink.bytes, rows=rows, raw_bytes=raw)


def read_batches(path: Path) -> Iterator[Any]:
    """Yield the record batches of a stream file without loading the whole file."""
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        reader = pa.ipc.open_stream(source)
        yield from reader


def manifest_of(path: Path) -> Manifest:
    """Compute a file's manifest from its bytes and by decoding every batch (rows, raw size)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    rows = raw = 0
    try:
        for batch in read_batches(path):
            rows += batch.num_rows
            raw += batch.nbytes
    except Exception as exc:  # pyarrow raises several types for a truncated or foreign file
        raise VerificationError(f"{path.name} is not a complete Arrow IPC stream: {exc}") from exc
    return Manifest(sha256=digest.hexdigest(), bytes=size, rows=rows, raw_bytes=raw)


def manifest_path(data_path: Path) -> Path:
    return data_path.with_name(data_path.name + ".manifest.json")


def save_manifest(data_path: Path, manifest: Manifest) -> None:
    """Write the manifest beside its data file, atomically."""
    target = manifest_path(data_path)
    tmp = temp_path(target)
    tmp.write_text(manifest.to_json())
    os.replace(tmp, target)


def load_manifest(data_path: Path) -> Manifest:
    return Manifest.from_dict(json.loads(manifest_path(data_path).read_text()))


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` (concurrent writers never share one)."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    return Path(name)


def receive_to(path: Path, source: IO[bytes], expected: Manifest | None = None) -> Manifest:
    """Copy ``source`` into ``path`` via a temporary file, verify it, then rename it into place.

    The manifest is written first and the data renamed last, so ``path`` exists only once it is
    complete and verified; on any failure the temporary file is removed.
    """
    partial = temp_path(path)
    try:
        with open(partial, "wb") as f:
            while chunk := source.read(CHUNK):
                f.write(chunk)
        got = manifest_of(partial)
        if expected is not None:
            got.check_against(expected, what=f"{path.name} failed verification")
        save_manifest(path, got)
        os.replace(partial, path)
        return got
    finally:
        partial.unlink(missing_ok=True)

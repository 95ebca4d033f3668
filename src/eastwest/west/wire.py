"""The wire format shared by east and west: content-addressed chunks of compressed Arrow batches.

A dataset is an ordered list of *chunks*. Each chunk is a complete Arrow IPC stream (schema plus a
few record batches, zstd-compressed buffers) of about ``CHUNK_RAW_BYTES`` uncompressed, stored
under the SHA-256 of its bytes. The dataset manifest lists the chunks with their byte and row
counts; its digest is the SHA-256 of the chunk digests in order. Both sides compute digests and
row counts independently, and a file gets its final name only after it was verified.

This module depends on pyarrow and the standard library only, so it runs on a western node
without Airflow. How chunks are framed on an SSH channel is in :mod:`eastwest.west.protocol`.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from eastwest.west.protocol import SHA256_HEX, excerpt

CHUNK = 1 << 20
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 3  # measured: ~9% smaller than level 1 on telemetry at the same speed (BENCHMARKS.md)
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
    options = write_options()
    with pa.ipc.new_stream(writer_sink, schema, options=options) as writer:
        for batch in batches:
            writer.write_batch(batch)
            rows += batch.num_rows
            raw += batch.nbytes
    return Manifest(sha256=writer_sink.sha256, bytes=writer_sink.bytes, rows=rows, raw_bytes=raw)


def write_options() -> Any:
    import pyarrow as pa

    return pa.ipc.IpcWriteOptions(compression=pa.Codec(COMPRESSION, compression_level=COMPRESSION_LEVEL))


#: A float column travels dictionary-encoded (16-bit indices) when a batch of at least
#: ``FLOAT_DICTIONARY_MIN_ROWS`` rows holds at most this share of distinct values, and at most
#: 32,767 of them: readings with a few decimals (a temperature of 25.09) then take 2 bytes before
#: compression instead of 8, as in Parquet's dictionary pages (measured in BENCHMARKS.md).
FLOAT_DICTIONARY_SHARE = 0.25
FLOAT_DICTIONARY_MIN_ROWS = 1024
_INT16_MAX = (1 << 15) - 1


def encode_batch(batch: Any, schema: Any) -> Any:
    """The batch as it travels, one pass over each column: string columns dictionary-encoded (halves
    telemetry on the wire), and float columns whose batch of at least ``FLOAT_DICTIONARY_MIN_ROWS``
    rows holds few distinct values (see ``FLOAT_DICTIONARY_SHARE``) as ``dictionary<int16>``. The
    result's schema is the batch's wire schema; fields keep their names, nullability and metadata."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns, fields = [], []
    for col, field in zip(batch.columns, schema, strict=True):
        if pa.types.is_dictionary(col.type):
            pass  # already a dictionary: travels as it is
        elif pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            col = pc.dictionary_encode(col)
        elif pa.types.is_floating(field.type) and batch.num_rows >= FLOAT_DICTIONARY_MIN_ROWS:
            found = pc.dictionary_encode(col)
            distinct = len(found.dictionary) + (1 if found.null_count else 0)  # nulls count as a value
            if distinct <= min(_INT16_MAX, batch.num_rows * FLOAT_DICTIONARY_SHARE):
                col = pa.DictionaryArray.from_arrays(found.indices.cast(pa.int16()), found.dictionary)
        columns.append(col)
        fields.append(pa.field(field.name, col.type, field.nullable, field.metadata))
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields, metadata=schema.metadata))


def decode_batch(batch: Any) -> Any:
    """Undo :func:`encode_batch`: dictionary columns back to their plain value type."""
    import pyarrow as pa

    if not any(pa.types.is_dictionary(f.type) for f in batch.schema):
        return batch
    columns = [col.dictionary_decode() if pa.types.is_dictionary(col.type) else col for col in batch.columns]
    fields = [
        pa.field(f.name, f.type.value_type, f.nullable, f.metadata) if pa.types.is_dictionary(f.type) else f
        for f in batch.schema
    ]
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields, metadata=batch.schema.metadata))


def read_batches(path: Path) -> Iterator[Any]:
    """Yield the record batches of a stream file without loading the whole file."""
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        reader = pa.ipc.open_stream(source)
        yield from reader


def ipc_rows(path: Path) -> int:
    """A stream file's row count from its record batches' IPC metadata, without decompressing them.

    Raises :class:`VerificationError` if the file is not a complete Arrow IPC stream.
    """
    import pyarrow as pa

    rows = 0
    try:
        with pa.memory_map(str(path)) as source:
            reader = pa.ipc.MessageReader.open_stream(source)
            while True:
                try:
                    message = reader.read_next_message()
                except StopIteration:
                    break
                if message is None:
                    break
                if message.type == "record batch":
                    rows += _record_batch_length(message.metadata)
    except Exception as exc:  # pyarrow raises several types for a truncated or foreign file
        raise VerificationError(f"{path.name} is not a complete Arrow IPC stream: {exc}") from exc
    return rows


def _record_batch_length(metadata: Any) -> int:
    """``Message.header.length`` of an IPC message's flatbuffer (Arrow's ``Message.fbs``)."""
    import struct

    buf = memoryview(metadata)

    def field(table: int, index: int) -> int:  # the field's offset within its table, 0 if absent
        vtable = table - struct.unpack_from("<i", buf, table)[0]
        slot = 4 + 2 * index
        return struct.unpack_from("<H", buf, vtable + slot)[0] if slot < struct.unpack_from("<H", buf, vtable)[0] else 0

    message = struct.unpack_from("<I", buf, 0)[0]
    header_at = field(message, 2)  # Message.header (the RecordBatch table)
    if not header_at:
        raise VerificationError("a record batch message without its header")
    header = message + header_at + struct.unpack_from("<I", buf, message + header_at)[0]
    length_at = field(header, 0)  # RecordBatch.length: int64, absent when 0
    length = struct.unpack_from("<q", buf, header + length_at)[0] if length_at else 0
    if length < 0:
        raise VerificationError(f"a record batch claims {length} rows")
    return int(length)


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` (concurrent writers never share one)."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    return Path(name)


# -- chunked, content-addressed datasets ------------------------------------------------------------

CHUNK_RAW_BYTES = 4 << 20
#: No chunk on the wire may claim more than this (a bad header must not fill a disk).
MAX_CHUNK_BYTES = 256 << 20


@dataclass(frozen=True)
class DatasetManifest:
    """An ordered list of chunk manifests; identical data gives an identical manifest."""

    chunks: tuple[Manifest, ...]

    @property
    def rows(self) -> int:
        return sum(c.rows for c in self.chunks)

    @property
    def bytes(self) -> int:
        return sum(c.bytes for c in self.chunks)

    @property
    def raw_bytes(self) -> int:
        return sum(c.raw_bytes for c in self.chunks)

    @property
    def sha256(self) -> str:
        return hashlib.sha256("\n".join(c.sha256 for c in self.chunks).encode()).hexdigest()

    def summary(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "rows": self.rows,
            "bytes": self.bytes,
            "raw_bytes": self.raw_bytes,
            "chunks": len(self.chunks),
        }

    def to_json(self) -> str:
        return json.dumps({**self.summary(), "chunks": [asdict(c) for c in self.chunks]}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | builtins.bytes) -> DatasetManifest:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: Any) -> DatasetManifest:
        """A manifest from parsed JSON; :class:`VerificationError` unless every field has its type."""
        if not isinstance(data, dict) or not isinstance(data.get("chunks"), list):
            raise VerificationError("a dataset manifest must be an object with a list of chunks")
        for i, chunk in enumerate(data["chunks"]):
            if not isinstance(chunk, dict):
                raise VerificationError(f"chunk {i} of the dataset manifest is not an object")
            sha = chunk.get("sha256")
            if not isinstance(sha, str) or not SHA256_HEX.fullmatch(sha):
                raise VerificationError(f"dataset manifest names an invalid chunk digest {excerpt(sha)}")
            for field in ("bytes", "rows", "raw_bytes"):
                value = chunk.get(field, 0 if field == "raw_bytes" else None)
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise VerificationError(f"chunk {sha[:12]}: {field} must be a count, not {excerpt(value)}")
        manifest = cls(tuple(Manifest.from_dict(c) for c in data["chunks"]))
        for key in ("sha256", "rows", "bytes"):
            if key in data and data[key] != getattr(manifest, key):
                raise VerificationError(
                    f"dataset manifest is inconsistent: {key} {excerpt(data[key])} != {getattr(manifest, key)}"
                )
        return manifest


class ChunkStore:
    """A directory of chunks named by their SHA-256 (``<root>/<aa>/<sha>.arrows``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        if not SHA256_HEX.fullmatch(sha256):
            raise VerificationError(f"{sha256!r} is not a SHA-256 digest")
        return self.root / sha256[:2] / f"{sha256}{SUFFIX}"

    def files(self) -> Iterator[Path]:
        """Every chunk file the store holds (not partial ones being written)."""
        return self.root.glob("*/*" + SUFFIX)

    def rows_path(self, sha256: str) -> Path:
        return self.path(sha256).with_suffix(".rows")

    def verify(self, sha256: str, *, rows: bool = False) -> Manifest | None:
        """The chunk's manifest if it is stored intact, else ``None`` (a damaged copy is removed).

        The digest and size are always checked. With ``rows`` the row count is known too: from the
        note :meth:`count_rows` left when the chunk was decoded on arrival (valid because the bytes
        still hash to the same digest), or by decoding every batch now.
        """
        path = self.path(sha256)
        if not path.exists():
            return None
        got: Manifest | None = Manifest(sha256=file_sha256(path), bytes=path.stat().st_size, rows=-1)
        if got is not None and got.sha256 == sha256 and rows:
            noted = self.rows_path(sha256)
            if noted.exists():
                got = Manifest(sha256=sha256, bytes=got.bytes, rows=int(noted.read_text()))
            else:
                got = self.count_rows(sha256)
        if got is None or got.sha256 != sha256:
            path.unlink(missing_ok=True)
            self.rows_path(sha256).unlink(missing_ok=True)
            return None
        os.utime(path)  # recently used: kept by garbage collection
        return got

    def noted(self, sha256: str) -> Manifest | None:
        """The chunk's manifest from its size and row note, without hashing; None if either is missing."""
        path, note = self.path(sha256), self.rows_path(sha256)
        try:
            return Manifest(sha256=sha256, bytes=path.stat().st_size, rows=int(note.read_text()))
        except (OSError, ValueError):
            return None

    def count_rows(self, sha256: str) -> Manifest | None:
        """Note a stored chunk's row count beside it, from its IPC metadata (nothing is decompressed);
        return its manifest, or None if it is not a complete Arrow IPC stream.

        Call it only for a chunk whose bytes were just hashed to ``sha256`` (on arrival, or by
        :meth:`verify`): the note is then as good as the digest.
        """
        path = self.path(sha256)
        try:
            rows = ipc_rows(path)
        except (VerificationError, OSError):
            return None
        note = self.rows_path(sha256)
        tmp = temp_path(note)
        tmp.write_text(str(rows))
        os.replace(tmp, note)
        return Manifest(sha256=sha256, bytes=path.stat().st_size, rows=rows)

    def receive(self, sha256: str, size: int, source: IO[bytes]) -> bool:
        """Store ``size`` bytes from ``source`` as chunk ``sha256`` if they hash to it.

        Always consumes exactly ``size`` bytes, so a framed stream stays in step; returns False and
        stores nothing when the bytes are not the chunk they claim to be.
        """
        target = self.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = temp_path(target)
        digest = hashlib.sha256()
        remaining = size
        try:
            with open(partial, "wb") as f:
                while remaining:
                    piece = source.read(min(CHUNK, remaining))
                    if not piece:
                        raise VerificationError(f"stream ended {remaining} bytes before the end of chunk {sha256[:12]}")
                    digest.update(piece)
                    f.write(piece)
                    remaining -= len(piece)
            if digest.hexdigest() != sha256:
                return False
            os.replace(partial, target)
            return True
        finally:
            partial.unlink(missing_ok=True)

    def add_file(self, partial: Path, manifest: Manifest) -> None:
        """Move a freshly written chunk file into the store under its digest."""
        target = self.path(manifest.sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, target)

    def batches(self, manifest: DatasetManifest) -> Iterator[Any]:
        """Yield a dataset's record batches chunk by chunk, checking each chunk's digest first."""
        for chunk in manifest.chunks:
            path = self.path(chunk.sha256)
            if not path.exists() or file_sha256(path) != chunk.sha256:
                raise VerificationError(f"chunk {chunk.sha256[:12]} is missing or damaged")
            for batch in read_batches(path):
                yield decode_batch(batch)

    def verify_dataset(self, manifest: DatasetManifest, *, rehash: bool = True) -> None:
        """Check every chunk's digest, size and rows; raise :class:`VerificationError` on any difference.

        With ``rehash=False`` a chunk whose row note exists (written only after its bytes were hashed
        on arrival or by :meth:`verify`) is checked by its size and note, not hashed again: a hub's
        ``commit`` right after ``have`` and ``put`` hashed every byte once. Whoever reads the chunks
        later (:meth:`batches`) hashes them again.
        """
        for chunk in manifest.chunks:
            got = self.noted(chunk.sha256) if not rehash else None
            got = got or self.verify(chunk.sha256, rows=True)
            if got is None:
                raise VerificationError(f"chunk {chunk.sha256[:12]} is missing or damaged")
            got.check_against(chunk, what=f"chunk {chunk.sha256[:12]}")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(CHUNK):
            digest.update(piece)
    return digest.hexdigest()


def write_chunks(
    batches: Iterable[Any], schema: Any, store: ChunkStore, target_raw_bytes: int = CHUNK_RAW_BYTES
) -> DatasetManifest:
    """Write batches into ``store`` as chunks of about ``target_raw_bytes``; return the manifest.

    One chunk is open at a time, so memory holds one batch plus compression buffers whatever the
    dataset size. Identical input gives identical chunks (zstd is deterministic). Each batch's
    wire encoding (:func:`encode_batch`) is judged on the batch; a batch whose encoding differs
    from its chunk's starts a new chunk.
    """
    import pyarrow as pa

    store.root.mkdir(parents=True, exist_ok=True)
    chunks: list[Manifest] = []
    options = write_options()
    state: dict[str, Any] = {}

    def close() -> None:
        state.pop("schema")
        writer, sink, handle, partial = (
            state.pop("writer"),
            state.pop("sink"),
            state.pop("handle"),
            state.pop("partial"),
        )
        writer.close()
        handle.close()
        manifest = Manifest(sha256=sink.sha256, bytes=sink.bytes, rows=state.pop("rows"), raw_bytes=state.pop("raw"))
        store.add_file(partial, manifest)
        chunks.append(manifest)

    try:
        for batch in batches:
            encoded = encode_batch(batch, schema)
            wire_schema = encoded.schema
            if "writer" in state and not wire_schema.equals(state["schema"]):
                close()
            if "writer" not in state:
                partial = temp_path(store.root / "chunk")
                handle = open(partial, "wb")
                sink = HashingWriter(handle)
                state.update(
                    partial=partial,
                    handle=handle,
                    sink=sink,
                    rows=0,
                    raw=0,
                    schema=wire_schema,
                    writer=pa.ipc.new_stream(sink, wire_schema, options=options),
                )
            state["writer"].write_batch(encoded)
            state["rows"] += batch.num_rows
            state["raw"] += batch.nbytes
            if state["raw"] >= target_raw_bytes:
                close()
        if "writer" in state:
            close()
    finally:
        if "partial" in state:
            state["handle"].close()
            state["partial"].unlink(missing_ok=True)
    return DatasetManifest(tuple(chunks))


def save_dataset_manifest(path: Path, manifest: DatasetManifest) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    tmp.write_text(manifest.to_json())
    os.replace(tmp, path)


def load_dataset_manifest(path: Path) -> DatasetManifest:
    return DatasetManifest.from_json(path.read_text())

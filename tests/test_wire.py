"""Arrow framing and verification: digests, byte and row counts, temp-name-then-rename."""

from __future__ import annotations

import io

import pyarrow as pa
import pytest

from westnode import wire


def table(rows: int = 10_000) -> pa.Table:
    return pa.table({"id": pa.array(range(rows), pa.int64()), "name": [f"m{i % 97}" for i in range(rows)]})


def write(path, t: pa.Table) -> wire.Manifest:
    with open(path, "wb") as f:
        return wire.write_stream(t.to_batches(max_chunksize=1000), t.schema, f)


def test_stream_roundtrip_and_manifest(tmp_path) -> None:
    t = table()
    path = tmp_path / "d.arrows"
    manifest = write(path, t)
    assert manifest.rows == t.num_rows
    assert manifest.bytes == path.stat().st_size
    assert manifest.raw_bytes > manifest.bytes  # zstd made it smaller
    assert wire.manifest_of(path) == manifest
    assert pa.Table.from_batches(list(wire.read_batches(path))).equals(t)


def test_compression_is_zstd(tmp_path) -> None:
    t = table()
    path = tmp_path / "d.arrows"
    write(path, t)
    data = path.read_bytes()
    assert b"\x28\xb5\x2f\xfd" in data  # zstd frame magic: the buffers are zstd-compressed
    uncompressed = io.BytesIO()
    with pa.ipc.new_stream(uncompressed, t.schema) as w:
        w.write_table(t)
    assert b"\x28\xb5\x2f\xfd" not in uncompressed.getvalue()
    assert len(data) < len(uncompressed.getvalue()) / 2


def test_receive_verifies_then_renames(tmp_path) -> None:
    src = tmp_path / "src.arrows"
    manifest = write(src, table())
    dest = tmp_path / "out" / "d.arrows"
    dest.parent.mkdir()
    got = wire.receive_to(dest, open(src, "rb"), manifest)
    assert got == manifest
    assert dest.read_bytes() == src.read_bytes()
    assert wire.load_manifest(dest) == manifest


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_stream_is_refused_and_nothing_is_left(tmp_path, damage) -> None:
    src = tmp_path / "src.arrows"
    manifest = write(src, table())
    data = bytearray(src.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[-100:]
    dest = tmp_path / "d.arrows"
    with pytest.raises(wire.VerificationError):
        wire.receive_to(dest, io.BytesIO(bytes(data)), manifest)
    assert list(tmp_path.iterdir()) == [src]  # no final file, no partial file


def test_wrong_row_count_is_refused(tmp_path) -> None:
    src = tmp_path / "src.arrows"
    manifest = write(src, table())
    lying = wire.Manifest(sha256=manifest.sha256, bytes=manifest.bytes, rows=manifest.rows + 1)
    with pytest.raises(wire.VerificationError, match="rows"):
        wire.receive_to(tmp_path / "d.arrows", open(src, "rb"), lying)
    assert not (tmp_path / "d.arrows").exists()


def test_non_arrow_bytes_are_refused(tmp_path) -> None:
    with pytest.raises(wire.VerificationError, match="not a complete Arrow IPC stream"):
        wire.receive_to(tmp_path / "d.arrows", io.BytesIO(b"ts,power\n1,2\n"))

"""The wire format: zstd Arrow chunks named by their digest, dataset manifests, framing."""

from __future__ import annotations

import io

import pyarrow as pa
import pytest

from eastwest.west import protocol, wire


def table(rows: int = 200_000) -> pa.Table:
    return pa.table({"id": pa.array(range(rows), pa.int64()), "name": [f"m{i % 97}" for i in range(rows)]})


def chunked(tmp_path, t: pa.Table, target: int = 1 << 20) -> tuple[wire.ChunkStore, wire.DatasetManifest]:
    store = wire.ChunkStore(tmp_path / "store")
    return store, wire.write_chunks(t.to_batches(max_chunksize=10_000), t.schema, store, target_raw_bytes=target)


def test_chunks_roundtrip_and_manifest(tmp_path) -> None:
    t = table()
    store, manifest = chunked(tmp_path, t)
    assert len(manifest.chunks) > 1
    assert manifest.rows == t.num_rows
    assert manifest.raw_bytes > manifest.bytes  # compressed
    for chunk in manifest.chunks:
        path = store.path(chunk.sha256)
        assert path.stat().st_size == chunk.bytes
        assert wire.file_sha256(path) == chunk.sha256
    assert pa.Table.from_batches(list(store.batches(manifest))).equals(t)  # dictionary-encoded on the wire only
    store.verify_dataset(manifest)
    assert not list(store.root.glob("*.partial")) and not list(store.root.glob(".*"))


def test_identical_data_gives_identical_chunks(tmp_path) -> None:
    _, a = chunked(tmp_path / "a", table())
    _, b = chunked(tmp_path / "b", table())
    assert a == b and a.sha256 == b.sha256
    _, c = chunked(tmp_path / "c", table(200_001))
    assert c.sha256 != a.sha256


def test_compression_is_zstd(tmp_path) -> None:
    store, manifest = chunked(tmp_path, table())
    data = store.path(manifest.chunks[0].sha256).read_bytes()
    assert b"\x28\xb5\x2f\xfd" in data  # zstd frame magic: the buffers are zstd-compressed
    plain = io.BytesIO()
    with pa.ipc.new_stream(plain, table().schema) as w:
        w.write_table(table())
    assert b"\x28\xb5\x2f\xfd" not in plain.getvalue()


def test_manifest_json_roundtrip_and_tampering(tmp_path) -> None:
    _, manifest = chunked(tmp_path, table())
    assert wire.DatasetManifest.from_json(manifest.to_json()) == manifest
    tampered = manifest.to_json().replace(f'"rows": {manifest.rows}', f'"rows": {manifest.rows + 1}', 1)
    with pytest.raises(wire.VerificationError, match="inconsistent"):
        wire.DatasetManifest.from_json(tampered)


def test_receive_stores_only_what_hashes_right(tmp_path) -> None:
    src, manifest = chunked(tmp_path / "src", table())
    chunk = manifest.chunks[0]
    data = src.path(chunk.sha256).read_bytes()
    dest = wire.ChunkStore(tmp_path / "dest")
    damaged = bytearray(data)
    damaged[len(damaged) // 2] ^= 0xFF
    stream = io.BytesIO(bytes(damaged) + b"TRAILER")
    assert dest.receive(chunk.sha256, len(data), stream) is False
    assert stream.read() == b"TRAILER"  # the framed stream stays in step
    assert not dest.path(chunk.sha256).exists()
    assert dest.receive(chunk.sha256, len(data), io.BytesIO(data)) is True
    got = dest.verify(chunk.sha256, rows=True)
    assert (got.sha256, got.bytes, got.rows) == (chunk.sha256, chunk.bytes, chunk.rows)


def test_truncated_stream_is_an_error_and_leaves_nothing(tmp_path) -> None:
    src, manifest = chunked(tmp_path / "src", table())
    chunk = manifest.chunks[0]
    data = src.path(chunk.sha256).read_bytes()
    dest = wire.ChunkStore(tmp_path / "dest")
    with pytest.raises(wire.VerificationError, match="stream ended"):
        dest.receive(chunk.sha256, len(data), io.BytesIO(data[:-10]))
    assert [p for p in (tmp_path / "dest").rglob("*") if p.is_file()] == []


def test_damaged_stored_chunk_is_detected_and_removed(tmp_path) -> None:
    store, manifest = chunked(tmp_path, table())
    path = store.path(manifest.chunks[1].sha256)
    damaged = bytearray(path.read_bytes())
    damaged[-20] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(wire.VerificationError, match="missing or damaged"):
        list(store.batches(manifest))
    assert store.verify(manifest.chunks[1].sha256) is None
    assert not path.exists()
    assert store.verify(manifest.chunks[0].sha256) is not None


def test_non_arrow_bytes_with_the_right_digest_fail_row_verification(tmp_path) -> None:
    import hashlib

    data = b"ts,power\n1,2\n"
    sha = hashlib.sha256(data).hexdigest()
    store = wire.ChunkStore(tmp_path)
    assert store.receive(sha, len(data), io.BytesIO(data))
    fake = wire.DatasetManifest((wire.Manifest(sha256=sha, bytes=len(data), rows=1),))
    with pytest.raises(wire.VerificationError):
        store.verify_dataset(fake)


@pytest.mark.parametrize("batch_rows", [0, 1, 7, 10_000, 65_536])
def test_row_counts_from_ipc_metadata_match_decoding(tmp_path, batch_rows) -> None:
    """Rows are counted from the batches' metadata, nothing decompressed, and agree with decoding
    (empty batches, dictionary batches, many batches per chunk)."""
    t = table(150_000 if batch_rows > 1000 else 3_000)
    batches = t.to_batches(max_chunksize=batch_rows) if batch_rows else [pa.RecordBatch.from_pylist([], t.schema)]
    store = wire.ChunkStore(tmp_path / "store")
    manifest = wire.write_chunks(batches, t.schema, store, target_raw_bytes=1 << 20)
    for chunk in manifest.chunks:
        decoded = sum(b.num_rows for b in wire.read_batches(store.path(chunk.sha256)))
        assert wire.ipc_rows(store.path(chunk.sha256)) == decoded == chunk.rows
    assert sum(c.rows for c in manifest.chunks) == (t.num_rows if batch_rows else 0)


def test_commit_trusts_the_arrival_note_but_a_wrong_row_count_is_still_refused(tmp_path) -> None:
    store, manifest = chunked(tmp_path, table())
    for chunk in manifest.chunks:
        assert store.count_rows(chunk.sha256) == wire.Manifest(chunk.sha256, chunk.bytes, chunk.rows)
    store.verify_dataset(manifest, rehash=False)
    first = manifest.chunks[0]
    lying = wire.DatasetManifest((wire.Manifest(first.sha256, first.bytes, first.rows + 1), *manifest.chunks[1:]))
    with pytest.raises(wire.VerificationError, match="rows"):
        store.verify_dataset(lying, rehash=False)
    store.rows_path(first.sha256).unlink()  # no note: hashed and counted now
    store.path(first.sha256).write_bytes(b"x" * first.bytes)
    with pytest.raises(wire.VerificationError, match="missing or damaged"):
        store.verify_dataset(manifest, rehash=False)


def test_floats_with_few_distinct_values_travel_as_dictionaries_and_come_back_bit_for_bit(tmp_path) -> None:
    rows = 20_000
    few = [round(20 + (i % 900) / 100, 2) for i in range(rows)]  # a temperature with two decimals
    few[3], few[4], few[5] = -0.0, float("nan"), None
    many = [i * 0.001 + 1e-9 * (i % 7) for i in range(rows)]  # nearly every value distinct
    t = pa.table({"temp": pa.array(few, pa.float64()), "power": pa.array(many, pa.float64())})
    store = wire.ChunkStore(tmp_path / "store")
    manifest = wire.write_chunks(t.to_batches(max_chunksize=5_000), t.schema, store, target_raw_bytes=1 << 30)
    assert len(manifest.chunks) == 1
    on_wire = pa.ipc.open_stream(store.path(manifest.chunks[0].sha256).read_bytes()).schema
    assert on_wire.field("temp").type == pa.dictionary(pa.int16(), pa.float64())
    assert on_wire.field("power").type == pa.float64()
    back = pa.Table.from_batches(list(store.batches(manifest)))
    assert back.schema == t.schema
    assert back["temp"].null_count == 1  # -0.0 and NaN keep their bits:
    assert back["temp"].to_numpy(zero_copy_only=False).tobytes() == t["temp"].to_numpy(zero_copy_only=False).tobytes()


def test_a_batch_whose_encoding_changes_starts_a_new_chunk(tmp_path) -> None:
    few = pa.table({"v": pa.array([float(i % 10) for i in range(4_000)])})
    many = pa.table({"v": pa.array([i / 7 for i in range(4_000)])})
    store = wire.ChunkStore(tmp_path / "store")
    batches = [*few.to_batches(), *many.to_batches(), *few.to_batches()]
    manifest = wire.write_chunks(batches, few.schema, store, target_raw_bytes=1 << 30)
    assert [c.rows for c in manifest.chunks] == [4_000, 4_000, 4_000]
    assert pa.Table.from_batches(list(store.batches(manifest))).equals(pa.concat_tables([few, many, few]))


def test_framing() -> None:
    sha = "ab" * 32
    stream = io.BytesIO(protocol.frame_header(sha, 42) + b"x" * 42 + protocol.END)
    assert protocol.read_frame_header(stream) == (sha, 42)
    stream.read(42)
    assert protocol.read_frame_header(stream) is None
    assert protocol.read_frame_header(io.BytesIO(b"")) is None  # a closed stream ends too
    with pytest.raises(protocol.FrameError, match="malformed"):
        protocol.read_frame_header(io.BytesIO(b"../../etc/passwd 12\n"))


@pytest.mark.parametrize(
    "line",
    [b"AB" * 32 + b" 1\n", b"ab" * 32 + b" -1\n", b"ab" * 32 + b"\n", b"ab" * 31 + b" 1\n", b"\xff" * 64 + b" 1\n"],
)
def test_frame_header_must_be_lowercase_sha256_and_a_size(line) -> None:
    with pytest.raises(protocol.FrameError, match="malformed chunk header"):
        protocol.read_frame_header(io.BytesIO(line))


def test_chunk_store_refuses_paths_that_are_not_digests(tmp_path) -> None:
    store = wire.ChunkStore(tmp_path)
    with pytest.raises(wire.VerificationError, match="is not a SHA-256 digest"):
        store.path("../../etc/passwd")

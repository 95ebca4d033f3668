"""The transfer engine: the one path by which datasets move between the east and a western hub.

A dataset is a list of content-addressed chunks (``eastwest.west.wire``). Shipping asks the hub which
chunks it already holds intact, sends only the others over N parallel sessions, has the hub
verify each chunk on arrival (a chunk that fails is sent again), and finally has the hub verify the
assembled dataset (digests and row counts) before it gets its name. Fetching does the same in
reverse. A retry after an interruption therefore sends only what is missing, and shipping identical
data again sends nothing.

Every command of one transfer runs over one OpenSSH connection to the hub (``eastwest.hub.openssh``:
one handshake, encryption in C, the host key pinned), the N streams as sessions multiplexed on it.

N comes from the link's bandwidth-delay product (connection extras ``eastwest_link_mbps`` and
``eastwest_rtt_ms``) or is set with ``eastwest_streams``; ``eastwest_rate_limit_mbps`` caps a shared
link. Long transfers log progress at a steady cadence; every transfer's metrics are returned and
saved under ``<data dir>/transfers/<hub>/`` for reports and later runs.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from eastwest.hub.hook import HubDiskFull, HubError, WestHubHook
from eastwest.hub.openssh import OpenSshLink, Session, session_of
from eastwest.settings import get_settings
from eastwest.west import bundle, protocol, wire
from eastwest.west.protocol import check_name

log = logging.getLogger(__name__)

#: OpenSSH's per-channel window; one channel cannot carry more than this per round trip.
CHANNEL_WINDOW = 2 << 20
SLICE = 256 << 10
DEFAULT_STREAMS = 4
MAX_STREAMS = 16
MAX_ROUNDS = 3
PROGRESS_EVERY = 5.0
#: A transfer records its bytes so far at most this often (s), for the report's throughput chart.
SAMPLE_EVERY = 0.25
#: ... and keeps at most this many samples (evenly thinned).
MAX_SAMPLES = 240
#: A stream is worth its SSH handshake only for this much data; small transfers use fewer.
MIN_BYTES_PER_STREAM = 4 << 20


@dataclass
class TransferMetrics:
    """What one transfer did; saved as JSON and shown in the run report."""

    direction: str
    hub: str
    run_key: str
    dataset: str
    rows: int = 0
    raw_bytes: int = 0
    dataset_bytes: int = 0
    wire_bytes: int = 0
    seconds: float = 0.0
    send_seconds: float = 0.0
    streams: int = 0
    chunks: int = 0
    chunks_skipped: int = 0
    chunks_resent: int = 0
    rate_limit_mbps: float | None = None
    errors: list[str] = field(default_factory=list)
    #: When the transfer started (Unix time), and [seconds since then, wire bytes so far] pairs.
    started_at: float = 0.0
    samples: list[list[float]] = field(default_factory=list)

    @property
    def wire_mb_per_s(self) -> float:
        return self.wire_bytes / 1e6 / self.seconds if self.seconds else 0.0

    @property
    def logical_mb_per_s(self) -> float:
        return self.raw_bytes / 1e6 / self.seconds if self.seconds else 0.0

    @property
    def link_mb_per_s(self) -> float:
        """Wire rate while data was flowing (first byte to last), without set-up and verification."""
        return self.wire_bytes / 1e6 / self.send_seconds if self.send_seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        data["send_seconds"] = round(self.send_seconds, 3)
        data["link_mb_per_s"] = round(self.link_mb_per_s, 2)
        data["wire_mb_per_s"] = round(self.wire_mb_per_s, 2)
        data["logical_mb_per_s"] = round(self.logical_mb_per_s, 2)
        data["ratio"] = round(self.raw_bytes / self.dataset_bytes, 2) if self.dataset_bytes else None
        return data


class RateLimiter:
    """A token bucket shared by all streams of a transfer (bytes per second)."""

    def __init__(self, bytes_per_second: float) -> None:
        self.rate = bytes_per_second
        self.burst = max(SLICE, bytes_per_second * 0.02)
        self._tokens = self.burst
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self, amount: int) -> None:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= amount
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)


_LIMITERS: dict[str, RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def plan_streams(extras: dict[str, Any]) -> int:
    """Parallel streams for a hub: set explicitly, or enough to cover twice the link's BDP."""
    if extras.get("eastwest_streams"):
        return max(1, min(MAX_STREAMS, int(extras["eastwest_streams"])))
    mbps, rtt_ms = extras.get("eastwest_link_mbps"), extras.get("eastwest_rtt_ms")
    if mbps and rtt_ms:
        bdp = float(mbps) * 1e6 / 8 * float(rtt_ms) / 1000
        return max(DEFAULT_STREAMS, min(MAX_STREAMS, math.ceil(2 * bdp / CHANNEL_WINDOW)))
    return DEFAULT_STREAMS


class _Progress:
    """Counts bytes from all streams and logs percent, MB/s and ETA every ``PROGRESS_EVERY`` s."""

    def __init__(self, label: str, total_bytes: int, raw_per_byte: float) -> None:
        self.label = label
        self.total = total_bytes
        self.raw_per_byte = raw_per_byte
        self.done = 0
        self.started = time.monotonic()
        self.first_byte: float | None = None
        self.last_byte: float | None = None
        self.last_ack: float | None = None
        self._last_log = self.started
        self._lock = threading.Lock()
        self.samples: list[list[float]] = [[0.0, 0]]

    def sample(self, now: float) -> None:
        """Record the bytes so far (the caller holds the lock)."""
        self.samples.append([round(now - self.started, 3), self.done])

    def thinned_samples(self) -> list[list[float]]:
        """The samples with the final count, thinned evenly to at most ``MAX_SAMPLES``."""
        with self._lock:
            self.sample(time.monotonic())
            samples = list(self.samples)
        if len(samples) <= MAX_SAMPLES:
            return samples
        step = (len(samples) - 1) / (MAX_SAMPLES - 1)
        return [samples[round(i * step)] for i in range(MAX_SAMPLES)]

    def add(self, amount: int) -> None:
        now = time.monotonic()
        with self._lock:
            self.done += amount
            if self.first_byte is None:
                self.first_byte = now
            self.last_byte = now
            if now - self.started - self.samples[-1][0] >= SAMPLE_EVERY:
                self.sample(now)

    def acknowledged(self) -> None:
        """A stream's receiver confirmed everything it was sent (the data left the link)."""
        with self._lock:
            self.last_ack = time.monotonic()

    @property
    def send_seconds(self) -> float:
        """First byte sent to the last acknowledgement from the receiver (or the last byte sent)."""
        end = max(filter(None, (self.last_ack, self.last_byte)), default=None)
        return (end - self.first_byte) if self.first_byte and end else 0.0

    def maybe_log(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_log < PROGRESS_EVERY:
            return
        self._last_log = now
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate else float("inf")
        log.info(
            "%s: %.0f%% (%.1f of %.1f MB on the wire) at %.1f MB/s wire, %.1f MB/s logical, ETA %.0fs",
            self.label,
            100.0 * self.done / max(self.total, 1),
            self.done / 1e6,
            self.total / 1e6,
            rate / 1e6,
            rate * self.raw_per_byte / 1e6,
            eta,
        )


class _Round:
    """What the streams of one round share: what arrived, what failed, the transfer's counters."""

    def __init__(self, progress: _Progress, limiter: RateLimiter | None, sends: Counter) -> None:
        self.progress = progress
        self.limiter = limiter
        self.sends = sends  # chunk digest → times it was started, across all rounds
        self.delivered: set[str] = set()
        self.damaged: set[str] = set()  # arrived, but not as the bytes their digest names
        self.errors: list[str] = []
        self.disk_full: HubDiskFull | None = None  # no further round can help until space is freed
        self._lock = threading.Lock()

    def started(self, sha256: str) -> None:
        with self._lock:
            self.sends[sha256] += 1

    def arrived(self, sha256: str) -> None:
        with self._lock:
            self.delivered.add(sha256)

    def arrived_damaged(self, sha256: str) -> None:
        with self._lock:
            self.damaged.add(sha256)

    def failed(self, exc: Exception) -> None:
        with self._lock:
            self.errors.append(f"{type(exc).__name__}: {exc}")
            if isinstance(exc, HubDiskFull):
                self.disk_full = exc


class _LimitedReader:
    """A file-like reader that charges every byte read to a rate limiter, to progress and to the
    session's idle watch."""

    def __init__(self, source: IO[bytes], limiter: RateLimiter | None, progress: _Progress, session: Session) -> None:
        self._source = source
        self._limiter = limiter
        self._progress = progress
        self._session = session

    def _charge(self, data: bytes) -> bytes:
        if data:
            if self._limiter:
                self._limiter.acquire(len(data))
            self._progress.add(len(data))
            self._session.progressed()
        return data

    def read(self, size: int = -1) -> bytes:
        return self._charge(self._source.read(min(size, SLICE) if size and size > 0 else SLICE))

    def readline(self, size: int = -1) -> bytes:
        return self._charge(self._source.readline(size))


class TransferEngine:
    """Move chunked datasets between this machine and one hub.

    :param hub: the hub (its SSH connection id).
    :param streams: parallel SSH connections; default from the connection (see :func:`plan_streams`).
    :param rate_limit_mbps: cap in Mbit/s for this transfer; default the connection's
        ``eastwest_rate_limit_mbps`` (none: as fast as the link allows).
    :param max_rounds: attempts at chunks that failed, within one call.
    :param idle_timeout: seconds a stream may make no progress before it counts as broken; default
        the connection's ``eastwest_idle_timeout`` or 120.
    """

    def __init__(
        self,
        hub: str,
        *,
        streams: int | None = None,
        rate_limit_mbps: float | None = None,
        max_rounds: int = MAX_ROUNDS,
        idle_timeout: float | None = None,
    ) -> None:
        self.hub = check_name("hub", hub)
        self.control = WestHubHook(hub)
        extras = self.control.extras
        self.idle_timeout = float(idle_timeout or extras.get("eastwest_idle_timeout") or self.control.idle_timeout)
        self.control.idle_timeout = self.idle_timeout
        self.streams = streams or plan_streams(extras)
        limit = rate_limit_mbps if rate_limit_mbps is not None else extras.get("eastwest_rate_limit_mbps")
        self.rate_limit_mbps = float(limit) if limit else None
        self.max_rounds = max_rounds
        self._open: OpenSshLink | None = None

    def __enter__(self) -> TransferEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _linked(self) -> Iterator[OpenSshLink]:
        """The engine's OpenSSH connection to the hub: opened on first use and kept for the engine's
        later transfers (a bundle and every input of a run cost one handshake); :meth:`close` ends it.
        A transfer that fails closes it too, so nothing it queued keeps flowing to the hub afterwards."""
        if self._open is None:
            link = OpenSshLink(self.control)
            link.__enter__()
            atexit.register(link.close)  # a caller that forgets close() leaves no master behind
            self._open = link
        else:
            self._open.ensure()
        try:
            yield self._open
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the engine's connection to the hub (a later transfer opens a new one)."""
        if self._open is not None:
            atexit.unregister(self._open.close)
            self._open.close()
            self._open = None

    def _limiter(self) -> RateLimiter | None:
        """The hub's limiter, shared by every transfer to that hub in this process."""
        if not self.rate_limit_mbps:
            return None
        with _LIMITERS_LOCK:
            limiter = _LIMITERS.get(self.hub)
            if limiter is None or limiter.rate != self.rate_limit_mbps * 1e6 / 8:
                limiter = _LIMITERS[self.hub] = RateLimiter(self.rate_limit_mbps * 1e6 / 8)
            return limiter

    def _metrics(self, direction: str, run_key: str, name: str, manifest: wire.DatasetManifest) -> TransferMetrics:
        return TransferMetrics(
            direction=direction,
            hub=self.hub,
            run_key=run_key,
            dataset=name,
            rows=manifest.rows,
            raw_bytes=manifest.raw_bytes,
            dataset_bytes=manifest.bytes,
            chunks=len(manifest.chunks),
            rate_limit_mbps=self.rate_limit_mbps,
        )

    # -- east → west -------------------------------------------------------------------------------

    def push(self, run_key: str, name: str, store: wire.ChunkStore, manifest: wire.DatasetManifest) -> TransferMetrics:
        """Ship a dataset; only chunks the hub lacks travel; the hub verifies before naming it."""
        check_name("run key", run_key)
        check_name("dataset", name)
        started = time.monotonic()
        metrics = self._metrics("push", run_key, name, manifest)
        unique = {c.sha256: c for c in manifest.chunks}
        with self._linked() as link:  # every command below is a session over the engine's one connection
            out = link.run([protocol.HAVE], stdin=json.dumps(list(unique)).encode(), what="have")
            present = set(json.loads(out))
            todo = [c for sha, c in unique.items() if sha not in present]
            metrics.chunks_skipped = len(unique) - len(todo)
            if todo:
                log.info(
                    "shipping %s of %s chunks (%.1f MB) of %s to %s over %s streams%s; %s already there",
                    len(todo),
                    len(unique),
                    sum(c.bytes for c in todo) / 1e6,
                    name,
                    self.hub,
                    self._streams_for(todo),
                    f", capped at {self.rate_limit_mbps} Mbit/s" if self.rate_limit_mbps else "",
                    metrics.chunks_skipped,
                )
            else:
                log.info("%s already holds all %s chunks of %s: nothing to send", self.hub, len(unique), name)
            self._rounds(
                todo,
                metrics,
                f"ship {name} to {self.hub}",
                lambda batch, state: self._put_round(batch, store, link, state),
            )
            link.ensure()  # the link may have dropped during the rounds
            link.run([protocol.COMMIT, run_key, name], stdin=manifest.to_json().encode(), what=f"verifying {name}")
        metrics.seconds = time.monotonic() - started
        return self._finish(metrics)

    def _streams_for(self, todo: list[wire.Manifest]) -> int:
        size = sum(c.bytes for c in todo)
        return max(1, min(self.streams, len(todo), math.ceil(size / MIN_BYTES_PER_STREAM)))

    def _put_round(self, todo: list[wire.Manifest], store: wire.ChunkStore, link: OpenSshLink, state: _Round) -> None:
        link.ensure()
        work: queue.Queue = queue.Queue()
        for chunk in sorted(todo, key=lambda c: -c.bytes):
            work.put(chunk)
        progress, limiter = state.progress, state.limiter

        def send(session: Session) -> bool:
            """Send chunks from the queue until it is empty (True) or the runner ended early (False)."""
            while True:
                try:
                    chunk = work.get_nowait()
                except queue.Empty:
                    return True
                state.started(chunk.sha256)
                header = protocol.frame_header(chunk.sha256, chunk.bytes)
                session.write(header)
                progress.add(len(header))
                remaining = chunk.bytes
                with open(store.path(chunk.sha256), "rb") as f:
                    while remaining:
                        if session.exited():  # it stopped reading (a full disk): sending is wasted
                            return False
                        piece = self._payload(f, chunk, min(SLICE, remaining))
                        if not piece:
                            raise HubError(f"local chunk {chunk.sha256[:12]} is shorter than its manifest")
                        if limiter:
                            limiter.acquire(len(piece))
                        session.write(piece)
                        progress.add(len(piece))
                        remaining -= len(piece)

        def worker(index: int) -> None:
            session = None
            try:
                session = session_of(link, protocol.PUT, what="put")
                try:
                    complete = send(session)
                except OSError:  # the runner (or the link) ended first: its exit status says why
                    complete = False
                if complete:
                    session.write(protocol.END)
                    session.close_input()
                code = session.wait()
                if complete:
                    progress.acknowledged()
                self.control.check_exit(code, session.error_text(), "put")
                if not complete:
                    raise HubError(f"hub {self.hub!r}: put ended before every chunk was sent")
            except Exception as exc:  # one broken stream must not stop the others
                state.failed(exc)
            finally:
                if session is not None:
                    session.kill()
                for line in (session.out if session else b"").decode("utf-8", "replace").splitlines():
                    try:
                        reply = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if not isinstance(reply, dict) or not isinstance(reply.get("sha256"), str):
                        continue
                    if reply.get("ok"):
                        state.arrived(reply["sha256"])
                    else:
                        log.warning(
                            "%s: chunk %s failed verification on arrival; it will be sent again",
                            self.hub,
                            reply["sha256"][:12],
                        )

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(self._streams_for(todo))]
        self._join(threads, progress)

    @staticmethod
    def _payload(f: IO[bytes], chunk: wire.Manifest, size: int) -> bytes:
        """The next ``size`` bytes of a chunk (a seam the fault tests use)."""
        return f.read(size)

    def push_bundle(self, run_key: str, jobs_dir: Path, store: wire.ChunkStore) -> str:
        """Ship the job bundle of ``jobs_dir`` (the runner and every job) and have the hub install it.

        The bundle travels as a one-chunk dataset like any data (a hub that has it receives
        nothing) and is unpacked only if every file hashes to the bundle's digest; returns it.
        """
        files = bundle.collect(jobs_dir)
        digest = bundle.digest_of(bundle.describe(files))
        table = bundle.to_table(files)
        manifest = wire.write_chunks(table.to_batches(), table.schema, store, target_raw_bytes=64 << 20)
        self.push(run_key, protocol.BUNDLE_DATASET, store, manifest)
        self.control.install_bundle(run_key, digest)
        log.info("job bundle %s (the runner and the jobs of %s) is installed on %s", digest[:12], jobs_dir, self.hub)
        return digest

    # -- west → east -------------------------------------------------------------------------------

    def pull(self, run_key: str, name: str, store: wire.ChunkStore) -> tuple[wire.DatasetManifest, TransferMetrics]:
        """Fetch a dataset into ``store``; chunks already here intact are not fetched again."""
        check_name("run key", run_key)
        check_name("dataset", name)
        started = time.monotonic()
        with self._linked() as link:
            out = link.run([protocol.MANIFEST, run_key, name], what=f"reading the manifest of {name}")
            manifest = wire.DatasetManifest.from_json(out)
            metrics = self._metrics("pull", run_key, name, manifest)
            unique = {c.sha256: c for c in manifest.chunks}
            todo = [c for sha, c in unique.items() if store.verify(sha) is None]
            metrics.chunks_skipped = len(unique) - len(todo)
            self._rounds(
                todo,
                metrics,
                f"fetch {name} from {self.hub}",
                lambda batch, state: self._get_round(batch, store, link, state),
                check=lambda undelivered, state: self._check_hub_copies(link, name, undelivered, state),
            )
        try:
            store.verify_dataset(manifest)
        except wire.VerificationError as exc:
            raise HubError(f"hub {self.hub!r}: {name} failed verification after fetching: {exc}") from exc
        metrics.seconds = time.monotonic() - started
        return manifest, self._finish(metrics)

    def _get_round(self, todo: list[wire.Manifest], store: wire.ChunkStore, link: OpenSshLink, state: _Round) -> None:
        link.ensure()
        streams = self._streams_for(todo)
        shares: list[list[wire.Manifest]] = [[] for _ in range(streams)]
        for i, chunk in enumerate(sorted(todo, key=lambda c: -c.bytes)):
            shares[i % streams].append(chunk)
        limiter = state.limiter

        def worker(index: int, share: list[wire.Manifest]) -> None:
            expected = {c.sha256: c.bytes for c in share}
            session = None
            try:
                session = session_of(link, protocol.GET, what="get", collect_stdout=False)
                session.write(json.dumps(list(expected)).encode() + b"\n")
                session.close_input()
                source: Any = _LimitedReader(session.stdout, limiter, state.progress, session)
                while (header := protocol.read_frame_header(source)) is not None:
                    sha, size = header
                    if expected.get(sha) != size:
                        raise HubError(
                            f"hub {self.hub!r} sent chunk {sha[:12]} ({size} bytes), which was not asked for"
                        )
                    state.started(sha)
                    if store.receive(sha, size, source):
                        state.arrived(sha)
                    else:
                        state.arrived_damaged(sha)
                        log.warning("%s: chunk %s arrived damaged; it will be fetched again", self.hub, sha[:12])
                code = session.wait()
                state.progress.acknowledged()
                self.control.check_exit(code, session.error_text(), "get")
            except Exception as exc:  # one broken stream must not stop the others
                state.failed(exc)
            finally:
                if session is not None:
                    session.kill()

        threads = [threading.Thread(target=worker, args=(i, share), daemon=True) for i, share in enumerate(shares)]
        self._join(threads, state.progress)

    def _check_hub_copies(self, link: OpenSshLink, name: str, undelivered: list[wire.Manifest], state: _Round) -> None:
        """After a round in which chunks arrived damaged: fail at once if the hub's own copies are bad.

        The hub re-hashes those chunks (``have``) and removes a copy that no longer matches its
        digest; no fetch can bring that back, the job has to write its result again. A chunk the
        hub still holds intact was damaged on the way, and the next round fetches it again.
        """
        suspects = [c.sha256 for c in undelivered if c.sha256 in state.damaged]
        if not suspects:
            return
        try:
            link.ensure()
            out = link.run([protocol.HAVE], stdin=json.dumps(suspects).encode(), what=f"checking the hub's {name}")
            present = set(json.loads(out))
        except (HubError, ValueError) as exc:  # the hub cannot be asked now: the next round tries again
            log.warning("%s: cannot check the hub's copy of %s (%s)", self.hub, name, exc)
            return
        bad = [sha for sha in suspects if sha not in present]
        if not bad:
            return
        if len(bad) == 1:
            named = f"chunk {bad[0][:12]} of {name} is damaged on hub {self.hub!r}: its bytes no longer hash"
        else:
            listed = ", ".join(sha[:12] for sha in bad[:5]) + (f" ({len(bad)} in all)" if len(bad) > 5 else "")
            named = f"chunks {listed} of {name} are damaged on hub {self.hub!r}: their bytes no longer hash"
        raise HubError(
            f"fetch {name} from {self.hub}: {named} to their SHA-256, and the hub removed the bad "
            f"{'copy' if len(bad) == 1 else 'copies'}; fetching again cannot repair {name}: rerun the compute "
            f"step so that the job writes {name} again, then fetch it"
        )

    # -- shared ------------------------------------------------------------------------------------

    def _rounds(
        self,
        todo: list[wire.Manifest],
        metrics: TransferMetrics,
        label: str,
        round_fn: Any,
        check: Callable[[list[wire.Manifest], _Round], None] | None = None,
    ) -> None:
        """Run rounds until every chunk in ``todo`` is delivered, or fail naming what is missing.

        ``check`` looks at the chunks a round left behind and raises when no further round can
        deliver them; a full disk on the hub stops the rounds too.
        """
        sends: Counter = Counter()
        total = sum(c.bytes for c in todo)
        progress = _Progress(label, total, metrics.raw_bytes / max(metrics.dataset_bytes, 1))
        limiter = self._limiter()
        metrics.streams = self._streams_for(todo) if todo else 0
        for attempt in range(1, self.max_rounds + 1):
            if not todo:
                break
            state = _Round(progress, limiter, sends)
            round_fn(todo, state)
            errors = state.errors
            metrics.errors.extend(errors)
            todo = [c for c in todo if c.sha256 not in state.delivered]
            if todo and state.disk_full is not None:  # no round can store anything until space is freed
                raise HubDiskFull(
                    f"hub {self.hub!r}: the hub's disk is full: {label} stopped with {len(todo)} chunks not "
                    "stored (no space left on device) and the dataset was not named on the hub; free space on "
                    "the hub (its operator can remove old runs with cleanup or grow the disk), then retry: the "
                    "retry sends only the chunks still missing"
                ) from state.disk_full
            if todo and check is not None:
                check(todo, state)
            if todo and attempt < self.max_rounds:
                log.warning(
                    "%s: %s chunks not delivered in round %s (%s); sending them again",
                    label,
                    len(todo),
                    attempt,
                    "; ".join(errors[-3:]) or "failed verification",
                )
        metrics.wire_bytes = progress.done
        metrics.send_seconds = progress.send_seconds
        metrics.started_at = time.time() - (time.monotonic() - progress.started)
        metrics.samples = progress.thinned_samples()
        metrics.chunks_resent = sum(n - 1 for n in sends.values() if n > 1)
        if total:
            progress.maybe_log(force=True)
        if todo:
            raise HubError(
                f"{label}: {len(todo)} chunks could not be delivered after {self.max_rounds} rounds "
                f"({'; '.join(metrics.errors[-3:])}); a retry resumes with only the missing chunks"
            )

    @staticmethod
    def _join(threads: list[threading.Thread], progress: _Progress) -> None:
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(timeout=0.5)
            progress.maybe_log()

    def _finish(self, metrics: TransferMetrics) -> TransferMetrics:
        log.info(
            "%s %s %s: %s rows, %.1f MB raw as %.1f MB in %s chunks; sent %.1f MB in %.2fs "
            "(%.1f MB/s wire, %.1f MB/s logical) over %s streams; %s chunks skipped, %s resent",
            metrics.direction,
            metrics.dataset,
            self.hub,
            metrics.rows,
            metrics.raw_bytes / 1e6,
            metrics.dataset_bytes / 1e6,
            metrics.chunks,
            metrics.wire_bytes / 1e6,
            metrics.seconds,
            metrics.wire_mb_per_s,
            metrics.logical_mb_per_s,
            metrics.streams,
            metrics.chunks_skipped,
            metrics.chunks_resent,
        )
        save_metrics(metrics)
        return metrics


def metrics_dir(hub: str) -> Path:
    return get_settings().data_dir / "transfers" / hub


def save_metrics(metrics: TransferMetrics) -> Path:
    """Record a transfer's metrics where reports and later runs can read them."""
    directory = metrics_dir(metrics.hub)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{metrics.run_key}.{metrics.dataset}.{metrics.direction}.json"
    tmp = wire.temp_path(target)
    tmp.write_text(json.dumps(metrics.to_dict(), indent=1))
    tmp.replace(target)
    return target


def recent_metrics(hub: str, limit: int = 20) -> list[dict[str, Any]]:
    """The hub's most recent transfer metrics, newest first."""
    files = sorted(metrics_dir(hub).glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    return [json.loads(p.read_text()) for p in files[:limit]]

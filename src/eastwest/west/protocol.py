"""The hub protocol, shared by the east's hub client and the western runner.

One module for both ends of the wire (like the SSH provider's ``utils/remote_job.py``): the runner's
command names, the rule every name passed as an argument must follow, the exit codes, and the
framing of chunks on an SSH channel. Standard library only: it runs on a hub without Airflow.
"""

from __future__ import annotations

import re
from typing import IO

#: Names that may appear in paths and on a runner command line: hubs, runs, datasets, jobs.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")

# -- runner commands --------------------------------------------------------------------------------
#: Which chunks of the digests on stdin the hub holds intact (JSON list in, JSON list out).
HAVE = "have"
#: Store framed chunks from stdin, verifying each; one JSON reply line per chunk.
PUT = "put"
#: Verify a dataset manifest from stdin against the stored chunks, then name it: ``commit RUN NAME``.
COMMIT = "commit"
#: Print a named dataset's manifest: ``manifest RUN NAME``.
MANIFEST = "manifest"
#: Framed chunks to stdout for the digests on stdin.
GET = "get"
#: Store a job's parameters (JSON on stdin), checked against what the job declares: ``params RUN JOB``.
PARAMS = "params"
#: Unpack a shipped job bundle (a dataset of the run) into the hub's bundle store: ``install-bundle RUN NAME``.
INSTALL_BUNDLE = "install-bundle"
#: Run a job of a verified bundle: ``run RUN JOB --bundle DIGEST``.
RUN = "run"
#: Print a finished job's metrics: ``metrics RUN JOB``.
METRICS = "metrics"
#: Remove a run's scratch and old unused chunks: ``cleanup RUN [--keep-hours H]``.
CLEANUP = "cleanup"
#: List the jobs of a bundle: ``jobs --bundle DIGEST``.
JOBS = "jobs"

#: Name of the dataset that carries a job bundle.
BUNDLE_DATASET = "bundle"

# -- exit codes -------------------------------------------------------------------------------------
EXIT_OK = 0
EXIT_USAGE = 2  # a malformed request, or a job / parameter the hub does not accept
EXIT_VERIFY = 3  # bytes, rows or a bundle that are not what they claim to be
EXIT_MISSING = 4  # a dataset, chunk or bundle that is not on the hub

# -- framing of chunks on an SSH channel ------------------------------------------------------------
# Each chunk travels as an ASCII header line "<sha256> <bytes>\n" followed by its bytes; "END\n"
# closes the stream. The receiver answers each chunk with one JSON line.

END = b"END\n"


class FrameError(ValueError):
    """A frame header that is not ``<sha256> <bytes>``."""


def is_safe_name(value: object) -> bool:
    return isinstance(value, str) and SAFE_NAME.fullmatch(value) is not None


def check_name(kind: str, value: object) -> str:
    """Return ``value`` if it is a safe name for paths and runner arguments, else raise ``ValueError``."""
    if not is_safe_name(value):
        raise ValueError(
            f"{kind} {value!r} is not allowed: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return str(value)


def frame_header(sha256: str, size: int) -> bytes:
    return f"{sha256} {size}\n".encode()


def read_frame_header(source: IO[bytes]) -> tuple[str, int] | None:
    """The next frame's (digest, size), or ``None`` at the end of the stream."""
    line = source.readline(128)
    if line in (END, b""):
        return None
    try:
        sha, size = line.decode("ascii").split()
        if not SHA256_HEX.fullmatch(sha) or not size.isdigit():
            raise ValueError
    except ValueError:
        raise FrameError(f"malformed chunk header {line[:80]!r}") from None
    return sha, int(size)

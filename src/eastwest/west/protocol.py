"""The hub protocol, shared by the east's hub client and the western runner.

One module for both ends of the wire (like the SSH provider's ``utils/remote_job.py``): the runner's
command names, the rule every name passed as an argument must follow, the exit codes, the limits on
what a request may carry on stdin, and the framing of chunks on an SSH channel. Standard library
only: it runs on a hub without Airflow.

Exit codes of the runner (``python -m eastwest.west.runner``); each of 1 to 70 comes with exactly
one line ``[eastwest.west] error: …`` on stderr (the last one), never a traceback:

=====  ================  =========================================================================
code   name              meaning
=====  ================  =========================================================================
0      ``EXIT_OK``       done (``--help`` too)
1      ``EXIT_JOB``      the job's own code raised (importing it, ``transform`` or computing its
                         result); the line names the exception and the job's file and line. Also
                         Python's own code when the interpreter fails before the runner starts
2      ``EXIT_USAGE``    a malformed request: unknown command or option, an unsafe name, a digest
                         that is not SHA-256, a frame header that is not ``<sha256> <bytes>``, a
                         digest list or parameters that are not JSON or too large or too deep, a
                         job the bundle does not have, parameters the job does not accept, a
                         dataset manifest that names no chunk (an empty dataset)
3      ``EXIT_VERIFY``   bytes, rows, a bundle or a dataset manifest (malformed, too large or too
                         deep included) that are not what they claim to be
4      ``EXIT_MISSING``  a dataset, chunk or bundle that is not on the hub
70     ``EXIT_INTERNAL`` anything else (a bug in the runner, a full or read-only disk): the
                         last-resort handler's one line names the exception type
128+N  (signal N)        ended by SIGTERM, SIGHUP or SIGPIPE; temporary files are removed
=====  ================  =========================================================================

Limits on what stdin may carry (:data:`MAX_DIGESTS_BYTES`, :data:`MAX_MANIFEST_BYTES`,
:data:`MAX_PARAMS_BYTES`, :data:`MAX_JSON_DEPTH`) are checked before any JSON is parsed; a request
over a limit is refused, never truncated. Untrusted values appear in messages only as short
excerpts (:func:`excerpt`), and every line the runner logs is one printable line (:func:`one_line`).
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import IO, Any

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

# -- exit codes (the table in the module docstring) -------------------------------------------------
EXIT_OK = 0
EXIT_JOB = 1  # the job's own code raised (the same code Python gives an uncaught exception)
EXIT_USAGE = 2  # a malformed request, or a job / parameter / dataset the hub does not accept
EXIT_VERIFY = 3  # bytes, rows, a manifest or a bundle that are not what they claim to be
EXIT_MISSING = 4  # a dataset, chunk or bundle that is not on the hub
EXIT_INTERNAL = 70  # the last-resort handler: an unexpected exception (EX_SOFTWARE of sysexits.h)
#: Every code the runner exits with, except 128 + a signal number.
EXIT_CODES = (EXIT_OK, EXIT_JOB, EXIT_USAGE, EXIT_VERIFY, EXIT_MISSING, EXIT_INTERNAL)

# -- limits on stdin --------------------------------------------------------------------------------
#: A JSON list of chunk digests (``have``, ``get``): 64 MiB, about 980,000 digests (~3.7 TiB of data).
MAX_DIGESTS_BYTES = 64 << 20
#: A dataset manifest (``commit``): 64 MiB, about 450,000 chunks.
MAX_MANIFEST_BYTES = 64 << 20
#: A job's parameters (``params``; also the stored ``JOB.params.json`` that ``run`` reads): 1 MiB.
MAX_PARAMS_BYTES = 1 << 20
#: Deepest nesting of arrays and objects in JSON read from stdin (parameters need 2, manifests 3).
MAX_JSON_DEPTH = 16
#: Longest integer literal in JSON read from stdin (an int64 has at most 19 digits).
MAX_JSON_DIGITS = 40
#: Longest line the runner logs; untrusted values in it are excerpts much shorter than this.
MAX_LINE = 1000

# -- framing of chunks on an SSH channel ------------------------------------------------------------
# Each chunk travels as an ASCII header line "<sha256> <bytes>\n" followed by its bytes; "END\n"
# closes the stream. The receiver answers each chunk with one JSON line.

END = b"END\n"


class FrameError(ValueError):
    """A frame header that is not ``<sha256> <bytes>``."""


class JSONInputError(ValueError):
    """JSON from stdin that is too large, nested too deep, not UTF-8 or not valid JSON."""


def excerpt(value: object, limit: int = 40) -> str:
    """A short, quoted, printable excerpt of an untrusted value, for messages and logs."""
    if isinstance(value, str | bytes):
        shown = repr(value[:limit])
        return shown + (f"… ({len(value)} characters)" if len(value) > limit else "")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    return f"a {type(value).__name__}"


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """``text`` as one printable line: line breaks and control characters escaped, cut at ``limit``."""
    clipped = text[: limit + 1]
    shown = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in clipped)
    if len(text) > limit or len(shown) > limit:
        return f"{shown[:limit]}… (cut at {limit} characters)"
    return shown


def is_safe_name(value: object) -> bool:
    return isinstance(value, str) and SAFE_NAME.fullmatch(value) is not None


def check_name(kind: str, value: object) -> str:
    """Return ``value`` if it is a safe name for paths and runner arguments, else raise ``ValueError``."""
    if not is_safe_name(value):
        raise ValueError(
            f"{kind} {excerpt(value, 60)} is not allowed: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return str(value)


# -- JSON from stdin --------------------------------------------------------------------------------

#: A JSON string (an unterminated one runs to the end), so brackets inside strings are not counted.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = [0] * 256
for _b in b"[{":
    _DEPTH_STEP[_b] = 1
for _b in b"]}":
    _DEPTH_STEP[_b] = -1


def json_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in the JSON text ``raw`` (found without parsing it)."""
    if raw.count(b"[") + raw.count(b"{") == 0:
        return 0
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets), initial=0))


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:  # json.loads would keep the last silently; the two ends could read it differently
            raise JSONInputError(f"key {excerpt(key)} appears twice in one object")
        result[key] = value
    return result


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_DIGITS:
        raise JSONInputError(f"an integer of {len(text)} digits is out of range")
    return int(text)


def load_json(raw: bytes, *, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON read from stdin, refusing it before parsing if it is too large or nested too deep.

    Raises :class:`JSONInputError` (with a message that never quotes more than an excerpt) for a
    document over ``max_bytes``, nested deeper than ``max_depth``, not UTF-8, not valid JSON, with a
    key twice in one object or an integer of more than :data:`MAX_JSON_DIGITS` digits. ``NaN`` and
    ``Infinity`` parse as floats: whoever checks the value refuses them with a message naming it.
    """
    if len(raw) > max_bytes:
        raise JSONInputError(f"more than {max_bytes} bytes, the limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JSONInputError(f"not UTF-8 (byte {excerpt(raw[exc.start : exc.start + 1])} at {exc.start})") from None
    # No more brackets than the limit cannot nest deeper than it (a list of digests has one).
    if raw.count(b"[") + raw.count(b"{") > max_depth and (depth := json_depth(raw)) > max_depth:
        raise JSONInputError(f"arrays and objects nest {depth} deep; the limit is {max_depth}")
    try:
        return json.loads(text, object_pairs_hook=_object, parse_int=_integer)
    except JSONInputError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError's message says where, not what
        raise JSONInputError(str(exc)) from None


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


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the hub ran out of disk space (or quota)."""
    import errno

    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)

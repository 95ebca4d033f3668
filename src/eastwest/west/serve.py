"""The forced command of the east's key on a hub: run one runner command, refuse everything else.

A hub installs the east's public key as::

    restrict,command="ROOT/bin/eastwest-serve" ssh-ed25519 AAAA… east

so whatever the east asks for arrives in ``SSH_ORIGINAL_COMMAND`` and this module decides. The
request is split like a POSIX shell would split it (``shlex``; nothing is ever run through a
shell), its first word must be one of the runner's commands and the rest is checked by that
command's own parser. The data root is fixed by the forced command, not by the request. Anything
else (no command: a login shell or SFTP; another program; a malformed line) is refused with one
line on stderr, appended to ``ROOT/log/refused.log`` on the hub, and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from eastwest.west import jobctl, protocol

#: The runner's commands (see :mod:`eastwest.west.runner`).
RUNNER_COMMANDS = (
    protocol.HAVE,
    protocol.PUT,
    protocol.COMMIT,
    protocol.MANIFEST,
    protocol.GET,
    protocol.PARAMS,
    protocol.INSTALL_BUNDLE,
    protocol.RUN,
    protocol.METRICS,
    protocol.CLEANUP,
    protocol.JOBS,
)
#: The longest request accepted (the runner's commands are a few names and a digest).
MAX_REQUEST = 1024


def refuse(root: Path, reason: str) -> int:
    """Say no in one line, on stderr and in the hub's log; exit code 2."""
    peer = (os.environ.get("SSH_CONNECTION") or "?").split(" ")[0]
    line = f"refused: {reason}"
    print(f"[eastwest.west] {line}", file=sys.stderr, flush=True)
    try:
        (root / "log").mkdir(exist_ok=True)
        with open(root / "log" / "refused.log", "a") as out:
            out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} from {peer}: {line}\n")
    except OSError:  # a full or read-only disk must not turn a refusal into a traceback
        pass
    return protocol.EXIT_USAGE


def _shown(text: str) -> str:
    return repr(text[:60] + ("…" if len(text) > 60 else ""))


def serve(root: Path, request: str | None) -> int:
    if request is None:
        return refuse(root, "this key runs the eastwest runner only: no shell, no SFTP, no other program")
    if len(request) > MAX_REQUEST or "\x00" in request:
        return refuse(root, f"a request of {len(request)} characters is not a runner command")
    try:
        words = shlex.split(request)
    except ValueError:
        return refuse(root, f"{_shown(request)} is not a runner command (unbalanced quotes)")
    if not words:
        return refuse(root, "an empty request is not a runner command")
    command = words[0]
    if command in jobctl.COMMANDS:
        return jobctl.main(["--root", str(root), *words])
    if command in RUNNER_COMMANDS:
        from eastwest.west import runner

        return runner.main(["--root", str(root), *words])
    return refuse(root, f"{_shown(command)} is not a runner command; this key runs the eastwest runner only")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eastwest.west.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="the hub's data root")
    args = parser.parse_args(argv)
    try:
        return serve(args.root.resolve(), os.environ.get("SSH_ORIGINAL_COMMAND"))
    except SystemExit as exc:  # argparse of a command: it printed one usage line already
        return exc.code if isinstance(exc.code, int) else protocol.EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

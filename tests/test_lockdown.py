"""The east's key on a hub runs the runner and nothing else, as an unprivileged user.

Through OpenSSH's own client against the real local hubs: no command, no shell, no SFTP, no
forwarding, no root; runner commands work. Then the forced command's parser, fuzzed in-process
with generated requests: one refusal line or a runner answer, never a traceback, never a command.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pwd
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import TEST_HOME
from eastwest.west import jobctl, protocol, serve

HUB = "west_guizhou"


def ssh_command(hubs, *args: str, user: str | None = None) -> list[str]:
    conn = hubs[HUB]
    known = TEST_HOME / "hubs" / "known_hosts"
    known.write_text(f"[127.0.0.1]:{conn['port']} {conn['extra']['host_key']}\n")  # the pinned key, checked
    return [
        "ssh",
        "-i",
        conn["extra"]["key_file"],
        "-p",
        str(conn["port"]),
        "-o",
        f"UserKnownHostsFile={known}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=10",
        f"{user or conn['login']}@127.0.0.1",
        *args,
    ]


def ssh(hubs, *args: str, user: str | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(ssh_command(hubs, *args, user=user), input=stdin, capture_output=True, text=True, timeout=60)


def refused_log(hubs) -> str:
    path = Path(hubs[HUB]["extra"]["eastwest_root"]) / "log" / "refused.log"
    return path.read_text() if path.exists() else ""


def test_the_key_runs_runner_commands(hubs) -> None:
    have = ssh(hubs, protocol.HAVE, stdin=json.dumps(["a" * 64]))
    assert have.returncode == 0 and json.loads(have.stdout) == [], have.stderr
    status = ssh(hubs, jobctl.STATUS, "no-run", "no-job")
    assert status.returncode == 0 and json.loads(status.stdout)["state"] == "missing"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["id"], "'id' is not a runner command"),
        (["sh", "-c", "id"], "'sh' is not a runner command"),
        (["/bin/bash"], "'/bin/bash' is not a runner command"),
        ([], "this key runs the eastwest runner only: no shell, no SFTP, no other program"),
        (["python3", "-c", "print(1)"], "'python3' is not a runner command"),
        (["have;", "id"], "'have;' is not a runner command"),
    ],
)
def test_the_key_cannot_run_anything_else(hubs, args, reason) -> None:
    result = ssh(hubs, *args)
    assert result.returncode == protocol.EXIT_USAGE, result
    assert result.stdout == "" and "uid=" not in result.stderr
    assert f"[eastwest.west] refused: {reason}" in result.stderr
    assert reason in refused_log(hubs)  # logged on the hub


def test_runner_arguments_are_not_a_shell(hubs, tmp_path) -> None:
    canary = tmp_path / "canary"
    for words in (["cleanup", f"$(touch {canary})"], ["cleanup", f"`touch {canary}`"], ["have", f";touch {canary}"]):
        result = ssh(hubs, shlex.join(words))
        assert result.returncode == protocol.EXIT_USAGE, result
        assert "Traceback" not in result.stderr
    assert not canary.exists()


def test_no_sftp_no_forwarding_no_root(hubs) -> None:
    conn = hubs[HUB]
    base = ssh_command(hubs)
    sftp = subprocess.run(
        ["sftp", "-b", "-", "-P", str(conn["port"]), *base[3:-1], base[-1]],
        input="ls /\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sftp.returncode != 0 and "bin" not in sftp.stdout
    forward = subprocess.run(
        [*base[:-1], "-W", f"127.0.0.1:{conn['port']}", base[-1]], capture_output=True, text=True, timeout=60
    )
    assert forward.returncode != 0 and "SSH-2.0" not in forward.stdout
    assert "forwarding failed" in forward.stderr, forward.stderr
    root = ssh(hubs, protocol.HAVE, user="root", stdin="[]")
    assert root.returncode == 255 and "Permission denied" in root.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="a hub user other than the developer's own needs root to create")
def test_the_hub_user_is_unprivileged_and_owns_only_the_data(hubs) -> None:
    user = pwd.getpwnam(hubs[HUB]["login"])
    assert hubs[HUB]["login"] == "eastwest-hub" and user.pw_uid != 0 and user.pw_gid != 0
    root = Path(hubs[HUB]["extra"]["eastwest_root"])
    owned = {p.name for p in root.iterdir() if p.stat().st_uid == user.pw_uid}
    assert owned == {"scratch", "jobs", "chunks", "bundles", "log"}
    for fixed in ("opt", "bin", "limits.json"):
        assert (root / fixed).stat().st_uid == 0 and not (root / fixed).stat().st_mode & 0o022


# -- the forced command's parser, fuzzed ------------------------------------------------------------

WORDS = st.sampled_from(
    [*serve.RUNNER_COMMANDS, *jobctl.COMMANDS, jobctl.SUPERVISE, "serve", "--root", "/", "id", "sh", "-c"]
)
NASTY = st.one_of(
    st.text(alphabet=st.sampled_from(list("ab.-_/;|&$`'\"()<>*?~ \t\n\\é")), max_size=40),
    st.from_regex(protocol.SAFE_NAME),
    st.sampled_from(["0" * 64, "--bundle", "--offset", "--digest", "--keep-hours", "-1", "1e999", "nan"]),
)
REQUESTS = st.one_of(  # no NUL: an environment variable (SSH_ORIGINAL_COMMAND) cannot hold one
    # (nor a lone surrogate: it is not text)
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=200),
    st.lists(st.one_of(WORDS, NASTY), min_size=1, max_size=6).map(shlex.join),
    st.lists(st.one_of(WORDS, NASTY), min_size=1, max_size=6).map(" ".join),
)


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzzhub")
    for sub in ("scratch", "chunks", "bundles", "jobs", "log"):
        (root / sub).mkdir()
    return root


def _serve(root: Path, request: str) -> tuple[int, str, str]:
    out, err = io.TextIOWrapper(io.BytesIO()), io.TextIOWrapper(io.BytesIO())
    stdin = io.TextIOWrapper(io.BytesIO(b""))
    os.environ["SSH_ORIGINAL_COMMAND"] = request
    old_stdin, sys.stdin = sys.stdin, stdin
    # the runner installs its own SIGTERM/SIGHUP/SIGPIPE handlers: a hub process's, not pytest's
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE)}
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = serve.main(["--root", str(root)])
    finally:
        sys.stdin = old_stdin
        del os.environ["SSH_ORIGINAL_COMMAND"]
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    out.flush()
    err.flush()
    return code, out.buffer.getvalue().decode(errors="replace"), err.buffer.getvalue().decode(errors="replace")


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=REQUESTS)
def test_generated_requests_get_an_answer_or_one_refusal_never_a_traceback(fuzz_root, request) -> None:
    code, _, err = _serve(fuzz_root, request)
    assert code in (protocol.EXIT_OK, protocol.EXIT_USAGE, protocol.EXIT_VERIFY, protocol.EXIT_MISSING), (code, err)
    assert "Traceback" not in err
    words = request.split()
    if not words or words[0] not in (*serve.RUNNER_COMMANDS, *jobctl.COMMANDS):
        assert code == protocol.EXIT_USAGE and err.startswith("[eastwest.west] refused: "), err
    # nothing was started or written outside the hub's directories
    assert not list(fuzz_root.glob("scratch/*/*.job/pid"))
    assert {p.name for p in fuzz_root.iterdir()} <= {"scratch", "chunks", "bundles", "jobs", "log"}


def test_supervise_is_not_reachable_through_the_forced_command(fuzz_root) -> None:
    code, _, err = _serve(fuzz_root, f"supervise r1 job --bundle {'0' * 64}")
    assert code == protocol.EXIT_USAGE and "'supervise' is not a runner command" in err

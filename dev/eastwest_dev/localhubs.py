"""Local western hubs: one real OpenSSH ``sshd`` per hub on 127.0.0.1, for demos and tests.

Each hub gets its own generated host key, config, data root with the deployed runner, declared
resource limits and pid file. The east logs in as an unprivileged system user (``eastwest-hub``,
or ``EASTWEST_HUB_USER``; never root) that owns only the hub's data directories, and its key is
installed as ``restrict,command="ROOT/bin/eastwest-serve"``: it runs the runner's commands and
nothing else (no shell, no SFTP, no forwarding). The hub is registered as an Airflow SSH
connection whose ``host_key`` pins that generated key.

    python -m eastwest_dev.localhubs up      # create (once) and start the hubs; write connections
    python -m eastwest_dev.localhubs down    # stop them
    python -m eastwest_dev.localhubs status
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from eastwest.settings import DEFAULT_HUBS
from eastwest_dev import REPO_ROOT as PROJECT_ROOT

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
DEFAULT_STATE = PROJECT_ROOT / ".local" / "hubs"
DEFAULT_PORT_BASE = 22101
DEFAULT_HUB_USER = "eastwest-hub"
#: Directories of a hub's root the hub user owns; everything else there belongs to root.
DATA_DIRS = ("scratch", "jobs", "chunks", "bundles", "log")
#: Default limits of a local hub (``limits.json``): per job, and how many jobs run at once;
#: EASTWEST_HUB_MAX_MEMORY_MB, EASTWEST_HUB_MAX_CPU_SECONDS and EASTWEST_HUB_SLOTS override them.
DEFAULT_LIMITS = {"max_memory_mb": 8192, "max_cpu_seconds": 3600, "slots": 4}


class HubSetupError(RuntimeError):
    """The local hubs cannot be created or started; the message says what to do."""


@dataclass(frozen=True)
class LocalHub:
    name: str
    port: int
    state_dir: Path
    listen: str = "127.0.0.1"

    @property
    def dir(self) -> Path:
        return self.state_dir / self.name

    @property
    def root(self) -> Path:
        """The hub's data root: deployed runner in ``opt/``, run data in ``scratch/``."""
        return self.dir / "root"

    @property
    def serve(self) -> Path:
        """The forced command of the east's key."""
        return self.root / "bin" / "eastwest-serve"

    @property
    def pid_file(self) -> Path:
        return self.dir / "sshd.pid"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return pid


def find_sshd() -> str:
    for candidate in SSHD_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("sshd")
    if found:
        return found
    raise HubSetupError(
        "OpenSSH server (sshd) is not installed. Install it with `apt-get install -y openssh-server` "
        "(as root), or run `make hubs`, which does that for you on Debian."
    )


def hubs_for(state_dir: Path, port_base: int, names: tuple[str, ...] = DEFAULT_HUBS) -> list[LocalHub]:
    return [LocalHub(name, port_base + i, state_dir) for i, name in enumerate(names)]


def _keygen(path: Path, comment: str) -> None:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
        )


def client_key(state_dir: Path) -> Path:
    key = state_dir / "east_client_ed25519"
    _keygen(key, "eastwest-east-client")
    return key


def hub_user() -> str:
    """The unprivileged account the east logs in as; created (as a system user) when missing."""
    import pwd

    name = os.environ.get("EASTWEST_HUB_USER", DEFAULT_HUB_USER)
    if os.geteuid() != 0:  # a developer's own account is unprivileged already
        return getpass.getuser()
    if name == "root":
        raise HubSetupError("EASTWEST_HUB_USER=root is refused: a hub never lets the east in as root")
    home = Path("/var/lib") / name  # sshd starts every session there; root owns it, the user only enters it
    home.mkdir(mode=0o755, exist_ok=True)
    try:
        if pwd.getpwnam(name).pw_dir != str(home):
            subprocess.run(["usermod", "--home", str(home), name], check=True)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh", name],
            check=True,
        )
        # A locked password ("!") makes sshd refuse even key logins when PAM is off; "*" only
        # means "no password".
        subprocess.run(["usermod", "-p", "*", name], check=True)
    return name


def _chown(path: Path, user: str) -> None:
    """Give ``path`` and everything under it to ``user`` (files a root process left there too)."""
    if os.geteuid() != 0:
        return
    shutil.chown(path, user, user)
    for parent, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(parent, name), *_ids(user))


def _ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def deploy_runner(hub: LocalHub, west_python: str, user: str, limits: dict[str, int] | None = None) -> None:
    """Install the base runner (``eastwest.west``) into the hub's root, as ``install.sh`` does on a real hub.

    The runner, the forced command and the limits belong to root; the hub user owns only the data
    directories. Jobs are not copied: they reach the hub as a content-addressed bundle with each run.
    """
    import eastwest.west

    source = Path(eastwest.west.__file__).resolve().parent
    target = hub.root / "opt" / "eastwest"
    if target.exists():
        shutil.rmtree(target)
    (target / "west").mkdir(parents=True)
    shutil.copy2(source.parent / "__init__.py", target / "__init__.py")
    for path in source.glob("*.py"):
        shutil.copy2(path, target / "west" / path.name)
    for sub in DATA_DIRS:
        (hub.root / sub).mkdir(parents=True, exist_ok=True)
        _chown(hub.root / sub, user)
    hub.serve.parent.mkdir(exist_ok=True)
    hub.serve.write_text(
        "#!/bin/sh\n# The forced command of the east's key: the runner, and nothing else.\n"
        f"PYTHONPATH={shlex.quote(str(hub.root / 'opt'))} exec {shlex.quote(west_python)} -B -P "
        f"-m eastwest.west.serve --root {shlex.quote(str(hub.root))}\n"
    )
    hub.serve.chmod(0o755)
    chosen = dict(DEFAULT_LIMITS if limits is None else limits)
    for key in DEFAULT_LIMITS:
        override = os.environ.get(f"EASTWEST_HUB_{key.upper()}")
        if override:
            chosen[key] = int(override)
    (hub.root / "limits.json").write_text(json.dumps(chosen, indent=2) + "\n")


def write_config(hub: LocalHub, client_pub: str, user: str) -> Path:
    hub.dir.mkdir(parents=True, exist_ok=True)
    _keygen(hub.host_key, f"{hub.name}-host")
    authorized = hub.dir / "authorized_keys"
    authorized.write_text(f'restrict,command="{hub.serve}" {client_pub}\n')
    authorized.chmod(0o644)  # sshd reads it as the hub user
    config = hub.dir / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"# local western hub {hub.name}; generated by eastwest_dev.localhubs",
                f"Port {hub.port}",
                f"ListenAddress {hub.listen}",
                f"HostKey {hub.host_key}",
                f"PidFile {hub.pid_file}",
                f"AuthorizedKeysFile {authorized}",
                f"AllowUsers {user}",
                "PermitRootLogin no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "PrintMotd no",
                "AcceptEnv none",
                "PermitUserEnvironment no",
                "DisableForwarding yes",
                "PermitTTY no",
                f"ForceCommand {hub.serve}",
                "MaxStartups 64:30:128",
                "MaxSessions 64",
                "ClientAliveInterval 15",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    return config


def _traverse_acl(mode: int, uid: int) -> bytes:
    """A POSIX access ACL (the kernel's xattr format) of ``mode`` plus search (x) for user ``uid``."""
    import struct

    owner, group, other = (mode >> 6) & 7, (mode >> 3) & 7, mode & 7
    entries = [(0x01, owner, -1), (0x02, 1, uid), (0x04, group, -1), (0x10, group | 1, -1), (0x20, other, -1)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i & 0xFFFFFFFF) for t, p, i in entries)


def grant_traverse(path: Path, user: str) -> list[Path]:
    """Let ``user`` (only) pass through every directory above ``path`` that others cannot enter.

    A project cloned under /root or a private temporary directory is otherwise out of the hub
    user's reach. Each such directory gets one ACL entry, search permission for that user alone
    (it cannot list or read anything there); directories that already carry an ACL are left alone.
    Returns the directories changed.
    """
    import stat

    if os.geteuid() != 0:
        return []
    uid = _ids(user)[0]
    changed = []
    for directory in reversed(path.resolve().parents):
        mode = stat.S_IMODE(directory.stat().st_mode)
        if mode & 0o001:
            continue
        try:
            os.getxattr(directory, "system.posix_acl_access")
            continue  # an ACL of its own: not ours to rewrite
        except OSError:
            pass
        os.setxattr(directory, "system.posix_acl_access", _traverse_acl(mode, uid))
        changed.append(directory)
    return changed


def check_user_can_run(user: str, west_python: str) -> None:
    """The hub user must be able to start the western Python (not one under root's home)."""
    if os.geteuid() != 0:
        return
    probe = subprocess.run(
        ["runuser", "-u", user, "--", west_python, "-c", "import polars, pyarrow"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        raise HubSetupError(
            f"the hub user {user} cannot run {west_python} ({probe.stderr.strip()[-200:]}); build the western "
            "environment from a Python every user can read (`make west-venv` uses /usr/bin/python3.11)"
        )


def connection_for(hub: LocalHub, key: Path, user: str) -> dict:
    """The Airflow SSH connection of a hub, with its host key pinned."""
    host_pub = " ".join(Path(f"{hub.host_key}.pub").read_text().split()[:2])
    return {
        "conn_type": "ssh",
        "description": f"local western hub {hub.name}",
        "host": "127.0.0.1",
        "port": hub.port,
        "login": user,
        "extra": {
            "key_file": str(key),
            "host_key": host_pub,
            "no_host_key_check": False,
            "allow_host_key_change": False,
            "look_for_keys": False,
            "compress": False,
            "conn_timeout": 10,
            "eastwest_root": str(hub.root),
            **profile_extras(hub.name),
        },
    }


def profile_extras(name: str) -> dict:
    """The hub's declared attributes (slots, memory, prices, link): its region's defaults, or the
    values in ``EASTWEST_HUB_PROFILES`` (JSON: ``{"west_gansu": {"eastwest_slots": 1, ...}}``)."""
    from eastwest.hub.placement import HubProfile

    overrides = json.loads(os.environ.get("EASTWEST_HUB_PROFILES") or "{}").get(name, {})
    return HubProfile.from_extras(name, overrides).extras() | overrides


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.05)
    return False


def up(state_dir: Path, port_base: int, west_python: str, names: tuple[str, ...] = DEFAULT_HUBS) -> dict:
    """Create and start the hubs (idempotent); return ``{conn_id: connection}`` and save it."""
    sshd = find_sshd()
    if not Path(west_python).exists():
        raise HubSetupError(f"western python {west_python} does not exist; run `make west-venv` first")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation directory
    key = client_key(state_dir)
    client_pub = " ".join(Path(f"{key}.pub").read_text().split()[:2])
    user = hub_user()
    for directory in grant_traverse(state_dir / "x", user) + grant_traverse(Path(west_python).parent, user):
        print(f"let the hub user {user} pass through {directory} (search permission only, as an ACL entry)")
    check_user_can_run(user, west_python)
    connections = {}
    for hub in hubs_for(state_dir, port_base, names):
        config = write_config(hub, client_pub, user)
        deploy_runner(hub, west_python, user)
        if hub.pid() is None:
            log = hub.dir / "sshd.log"
            check = subprocess.run([sshd, "-t", "-f", str(config)], capture_output=True, text=True)
            if check.returncode != 0:
                raise HubSetupError(f"hub {hub.name}: sshd rejects its config {config}: {check.stderr.strip()}")
            subprocess.run([sshd, "-f", str(config), "-E", str(log)], check=True)
            if not wait_port(hub.port):
                raise HubSetupError(
                    f"hub {hub.name}: sshd did not start listening on 127.0.0.1:{hub.port}; see {log} "
                    f"(is the port taken? set EASTWEST_HUB_PORT_BASE)"
                )
        connections[hub.name] = connection_for(hub, key, user)
    (state_dir / "connections.json").write_text(json.dumps(connections, indent=2))
    env_lines = [
        f"export AIRFLOW_CONN_{name.upper()}={shlex.quote(json.dumps(conn))}" for name, conn in connections.items()
    ]
    (state_dir / "connections.env").write_text("\n".join(env_lines) + "\n")
    return connections


def down(state_dir: Path, port_base: int, names: tuple[str, ...] = DEFAULT_HUBS) -> list[str]:
    """Stop every running hub, with the sessions its sshd serves (as a hub that went away would:
    a client's lingering master connection must not outlive it); return the names stopped."""
    import psutil

    stopped = []
    for hub in hubs_for(state_dir, port_base, names):
        pid = hub.pid()
        if pid is None:
            continue
        try:
            sessions = psutil.Process(pid).children(recursive=True)
        except psutil.NoSuchProcess:
            sessions = []
        for session in sessions:
            try:
                session.terminate()
            except psutil.NoSuchProcess:
                pass
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if hub.pid() is None:
                break
            time.sleep(0.05)
        hub.pid_file.unlink(missing_ok=True)
        stopped.append(hub.name)
    return stopped


def export_connections(state_dir: Path) -> dict:
    """Put the saved hub connections into this process's environment (for ``dag.test()`` runs)."""
    path = state_dir / "connections.json"
    if not path.exists():
        raise HubSetupError(f"{path} does not exist; start the hubs first with `make hubs`")
    connections = json.loads(path.read_text())
    for name, conn in connections.items():
        os.environ[f"AIRFLOW_CONN_{name.upper()}"] = json.dumps(conn)
    return connections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eastwest_dev.localhubs", description="Run local western hubs.")
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--state-dir", type=Path, default=Path(os.environ.get("EASTWEST_HUBS_DIR", DEFAULT_STATE)))
    parser.add_argument(
        "--port-base", type=int, default=int(os.environ.get("EASTWEST_HUB_PORT_BASE", DEFAULT_PORT_BASE))
    )
    parser.add_argument("--west-python", default=str(PROJECT_ROOT / ".local" / "west-venv" / "bin" / "python"))
    args = parser.parse_args(argv)
    state_dir = args.state_dir.resolve()
    try:
        if args.action == "up":
            for name, conn in up(state_dir, args.port_base, args.west_python).items():
                print(
                    f"hub {name}: sshd on 127.0.0.1:{conn['port']}, host key pinned ({conn['extra']['host_key'][:40]}…)"
                )
            print(f"connections: {state_dir / 'connections.env'}")
        elif args.action == "down":
            stopped = down(state_dir, args.port_base)
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        else:
            for hub in hubs_for(state_dir, args.port_base):
                pid = hub.pid()
                print(f"hub {hub.name}: {'running, pid ' + str(pid) if pid else 'stopped'} (port {hub.port})")
    except HubSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

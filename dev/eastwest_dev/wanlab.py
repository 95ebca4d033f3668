"""WAN emulation: a western hub behind a shaped, delayed link, on this machine (root required).

The hub's ``sshd`` runs in its own network namespace, reached over a veth pair with addresses from
198.18.0.0/15 (reserved for benchmarking). ``tc`` tbf shapes the link's rate in both directions;
a small userspace relay adds the round-trip delay (this kernel has no netem). Everything is torn
down on exit, on failure and on Ctrl-C.

    with WanLink("wan1", index=1, rate_mbit=200, rtt_ms=30, state_dir=..., west_python=...) as link:
        link.connection  # an Airflow SSH connection dict, host key pinned, via the relay

    python -m eastwest_dev.wanlab relay --listen 127.0.0.1:23001 --to 198.18.1.2:22 --rtt-ms 30
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from eastwest_dev import localhubs

RELAY_PORT_BASE = 23000


class WanLabError(RuntimeError):
    """The emulated link cannot be built here; the message says why."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _ns(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True, check=check)


class WanLink:
    """A hub in namespace ``ew-<name>`` at 198.18.<index>.2, reached through a delay relay.

    :param rate_mbit: link rate in Mbit/s each way (None: unshaped).
    :param rtt_ms: round-trip delay added by the relay.
    """

    def __init__(
        self,
        name: str,
        *,
        index: int,
        state_dir: Path,
        west_python: str,
        rate_mbit: float | None = None,
        rtt_ms: float = 0.0,
        relay: bool = True,
        baseline_login: bool = False,
    ) -> None:
        if os.geteuid() != 0:
            raise WanLabError("the WAN emulation needs root (network namespaces and tc)")
        if not 1 <= index <= 250:
            raise WanLabError("index must be 1..250")
        self.name = name
        self.ns = f"ew-{name}"
        self.east_if = f"ew{index}e"
        self.west_if = f"ew{index}w"
        self.east_ip = f"198.18.{index}.1"
        self.west_ip = f"198.18.{index}.2"
        self.rate_mbit = rate_mbit
        self.rtt_ms = rtt_ms
        self.relay_port = RELAY_PORT_BASE + index
        self.use_relay = relay or rtt_ms > 0
        self.hub = localhubs.LocalHub(name, 22, state_dir, listen=self.west_ip)
        self.state_dir = state_dir
        self.west_python = west_python
        self._relay: subprocess.Popen | None = None
        self._previous_sigterm: Any = signal.SIG_DFL
        self.connection: dict[str, Any] = {}
        #: For benchmarks only: a second key with a plain login (no forced command), what the stock
        #: SFTP and scp ways need; the engine's key stays locked to the runner.
        self.baseline_login = baseline_login
        self.baseline_connection: dict[str, Any] = {}

    # -- lifecycle --------------------------------------------------------------------------------

    def __enter__(self) -> WanLink:
        atexit.register(self.close)
        self._previous_sigterm = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: Any) -> None:
            self.close()
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_sigterm)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        atexit.unregister(self.close)
        signal.signal(signal.SIGTERM, self._previous_sigterm)

    def _build(self) -> None:
        self.close()  # a leftover from an interrupted run
        _ip("netns", "add", self.ns)
        _ns(self.ns, "ip", "link", "set", "lo", "up")
        _ip("link", "add", self.east_if, "type", "veth", "peer", "name", self.west_if)
        _ip("link", "set", self.west_if, "netns", self.ns)
        _ip("addr", "add", f"{self.east_ip}/30", "dev", self.east_if)
        _ip("link", "set", self.east_if, "up")
        _ns(self.ns, "ip", "addr", "add", f"{self.west_ip}/30", "dev", self.west_if)
        _ns(self.ns, "ip", "link", "set", self.west_if, "up")
        if self.rate_mbit:
            self.shape(self.rate_mbit)
        sshd = localhubs.find_sshd()
        key = localhubs.client_key(self.state_dir)
        user = localhubs.hub_user()
        self.hub.dir.mkdir(parents=True, exist_ok=True)
        localhubs.grant_traverse(self.hub.dir, user)
        localhubs.grant_traverse(Path(self.west_python).parent, user)
        config = localhubs.write_config(self.hub, " ".join(Path(f"{key}.pub").read_text().split()[:2]), user)
        localhubs.deploy_runner(self.hub, self.west_python, user)
        if self.baseline_login:
            plain = self.state_dir / "baseline_client_ed25519"
            localhubs._keygen(plain, "eastwest-bench-baseline")
            authorized = self.hub.dir / "authorized_keys"
            pub = " ".join(Path(f"{plain}.pub").read_text().split()[:2])
            authorized.write_text(authorized.read_text() + f"{pub}\n")
            lines = config.read_text().splitlines()
            kept = [line for line in lines if not line.startswith("ForceCommand")]
            config.write_text("\n".join([*kept, "Subsystem sftp internal-sftp"]) + "\n")
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        _ns(self.ns, sshd, "-f", str(config), "-E", str(self.hub.dir / "sshd.log"))
        conn = localhubs.connection_for(self.hub, key, user)
        conn["host"] = self.west_ip
        if not localhubs.wait_port(22, host=self.west_ip):
            raise WanLabError(
                f"sshd of {self.name} did not start on {self.west_ip}:22; see {self.hub.dir / 'sshd.log'}"
            )
        if self.use_relay:
            self._relay = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "eastwest_dev.wanlab",
                    "relay",
                    "--listen",
                    f"127.0.0.1:{self.relay_port}",
                    "--to",
                    f"{self.west_ip}:22",
                    "--rtt-ms",
                    str(self.rtt_ms),
                    "--rate-mbit",
                    str(self.rate_mbit or 0),
                ],
            )
            if not localhubs.wait_port(self.relay_port):
                raise WanLabError(f"the delay relay for {self.name} did not start on 127.0.0.1:{self.relay_port}")
            conn["host"], conn["port"] = "127.0.0.1", self.relay_port
        conn["description"] = (
            f"emulated WAN hub {self.name}: {self.rate_mbit or 'unshaped'} Mbit/s, {self.rtt_ms} ms RTT"
        )
        conn["extra"]["eastwest_rtt_ms"] = self.rtt_ms
        if self.rate_mbit:
            conn["extra"]["eastwest_link_mbps"] = self.rate_mbit
        self.connection = conn
        if self.baseline_login:
            plain = str(self.state_dir / "baseline_client_ed25519")
            self.baseline_connection = {**conn, "extra": {**conn["extra"], "key_file": plain}}

    def shape(self, rate_mbit: float) -> None:
        """Set (or change) the tbf rate on both ends of the link."""
        burst = max(32_000, int(rate_mbit * 1e6 / 8 / 250))  # ~4 ms of traffic
        for cmd in (
            ["tc", "qdisc", "replace", "dev", self.east_if, "root", "tbf"],
            ["ip", "netns", "exec", self.ns, "tc", "qdisc", "replace", "dev", self.west_if, "root", "tbf"],
        ):
            subprocess.run(
                [*cmd, "rate", f"{rate_mbit}mbit", "burst", str(burst), "latency", "200ms"],
                check=True,
                capture_output=True,
            )

    def cut(self) -> None:
        """Take the link down (a fault: established connections stall)."""
        _ip("link", "set", self.east_if, "down")

    def restore(self) -> None:
        _ip("link", "set", self.east_if, "up")

    def close(self) -> None:
        if self._relay is not None:
            self._relay.terminate()
            try:
                self._relay.wait(5)
            except subprocess.TimeoutExpired:
                self._relay.kill()
            self._relay = None
        # Every process in the namespace: the sshd listener, its sessions and their runners.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = _ip("netns", "pids", self.ns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), sig)
                except (ProcessLookupError, ValueError):
                    pass
            for _ in range(50):
                if not _ip("netns", "pids", self.ns, check=False).stdout.split():
                    break
                time.sleep(0.1)
        _ip("link", "del", self.east_if, check=False)
        _ip("netns", "del", self.ns, check=False)
        self.hub.pid_file.unlink(missing_ok=True)


# -- the delay relay ----------------------------------------------------------------------------------


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, limit: int) -> None:
    """Copy reader → writer, delivering each piece ``delay`` seconds after it arrived.

    At most ``limit`` bytes are in flight, so a slow receiver pushes back on the sender as a real
    link would (the relay is not a buffer that hides the bottleneck).
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    budget = asyncio.Semaphore(max(1, limit // 65536))

    async def receive() -> None:
        while True:
            await budget.acquire()
            data = await reader.read(65536)
            await queue.put((loop.time() + delay, data))
            if not data:
                return

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
            budget.release()

    try:
        await asyncio.gather(receive(), deliver())
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _relay(listen: str, target: str, rtt_ms: float, rate_mbit: float) -> None:
    host, port = listen.rsplit(":", 1)
    to_host, to_port = target.rsplit(":", 1)
    delay = rtt_ms / 2000.0
    # in flight per direction: the link's bandwidth-delay product, with room for bursts
    bdp = (rate_mbit * 1e6 / 8 if rate_mbit else 1e9) * max(delay, 0.001)
    limit = int(max(1 << 20, 4 * bdp))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(to_host, int(to_port))
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pump(reader, up_writer, delay, limit), _pump(up_reader, writer, delay, limit))

    server = await asyncio.start_server(handle, host, int(port))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eastwest_dev.wanlab")
    sub = parser.add_subparsers(dest="command", required=True)
    relay = sub.add_parser("relay", help="a TCP relay that adds round-trip delay")
    relay.add_argument("--listen", required=True)
    relay.add_argument("--to", required=True)
    relay.add_argument("--rtt-ms", type=float, default=0.0)
    relay.add_argument("--rate-mbit", type=float, default=0.0)
    args = parser.parse_args(argv)
    try:
        asyncio.run(_relay(args.listen, args.to, args.rtt_ms, args.rate_mbit))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

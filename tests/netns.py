"""Two network namespaces joined by a veth pair, for tests between "two machines".

Needs root and iproute2 (``ip``; ``tc`` for a rate limit); :func:`unavailable`
says why not, for ``pytest.skip``. Every process started with :meth:`Pair.popen`
is killed, and both namespaces deleted, on exit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUDP = [sys.executable, "-m", "rudp"]


def unavailable(*, tc: bool = False) -> str | None:
    """Why namespaces cannot be used here, or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "iproute2 'ip' command not found"
    if tc and shutil.which("tc") is None:
        return "iproute2 'tc' command not found (apt-get install iproute2)"
    probe = f"rudpprobe{uuid.uuid4().hex[:6]}"
    res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if res.returncode != 0:
        return f"cannot create network namespaces: {res.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def env() -> dict[str, str]:
    """The environment for rudp processes: this checkout first, no RUDP_LOG."""
    out = {k: v for k, v in os.environ.items() if k != "RUDP_LOG"}
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    return out


class Pair:
    """Namespaces ``a`` (address :attr:`a_ip`) and ``b`` (:attr:`b_ip`) on one veth.

    ``rate`` (e.g. ``"50mbit"``) shapes each direction with a ``tbf`` qdisc; its
    queue holds ``latency`` of data at that rate.
    """

    def __init__(self, *, rate: str | None = None, latency: str = "50ms") -> None:
        tag = uuid.uuid4().hex[:6]
        self.a, self.b = f"rudpa{tag}", f"rudpb{tag}"
        self._va, self._vb = f"va{tag}", f"vb{tag}"
        self.a_ip, self.b_ip = "10.203.0.1", "10.203.0.2"
        self.rate = rate
        self.latency = latency
        self.procs: list[subprocess.Popen[Any]] = []

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def __enter__(self) -> Pair:
        try:
            self._ip("netns", "add", self.a)
            self._ip("netns", "add", self.b)
            self._ip("link", "add", self._va, "type", "veth", "peer", "name", self._vb)
            self._ip("link", "set", self._va, "netns", self.a)
            self._ip("link", "set", self._vb, "netns", self.b)
            for ns, dev, addr in ((self.a, self._va, self.a_ip), (self.b, self._vb, self.b_ip)):
                self._ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
                self._ip("-n", ns, "link", "set", dev, "up")
                self._ip("-n", ns, "link", "set", "lo", "up")
                if self.rate is not None:
                    subprocess.run(
                        ["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root",
                         "tbf", "rate", self.rate, "burst", "32kbit", "latency", self.latency],
                        check=True, capture_output=True,
                    )  # fmt: skip
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def popen(self, ns: str, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside namespace ``ns`` (killed on exit)."""
        kw.setdefault("env", env())
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kw)
        self.procs.append(p)
        return p

    def run(
        self, ns: str, argv: list[str], timeout: float, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        kw.setdefault("env", env())
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(
            ["ip", "netns", "exec", ns, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            **kw,
        )


_pending: dict[tuple[int, int], bytes] = {}


def read_line(p: subprocess.Popen[Any], stream: str = "stderr", timeout: float = 30) -> str:
    """The next line a process prints (bounded wait; '' at EOF)."""
    f = getattr(p, stream)
    fd = f.fileno()
    key = (p.pid, fd)
    deadline = time.monotonic() + timeout
    os.set_blocking(fd, False)
    buf = _pending.pop(key, b"")
    while True:
        if b"\n" in buf:
            line, rest = buf.split(b"\n", 1)
            _pending[key] = rest
            return line.decode()
        if time.monotonic() >= deadline:
            _pending[key] = buf
            raise TimeoutError(f"no line from {p.args} within {timeout} s")
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.02)
            continue
        if not chunk:
            return buf.decode()
        buf += chunk


def rss_kib(pid: int) -> int:
    """Resident memory of a process (KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for {pid}")

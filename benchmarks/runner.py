"""Run one measurement: a server process, then a client process, then collect both.

Any failure (a crash, a timeout, an error reported by a worker) becomes an
error string in the returned :class:`RepResult`; nothing here raises for a
failing stack, so one bad measurement never stops the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .common import JSONDict, Spec

#: Directory containing the ``benchmarks`` package (and normally ``rudp``).
ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
STDERR_TAIL = 4000


@dataclass
class RepResult:
    """Outcome of one repetition of one case."""

    ok: bool
    client: JSONDict | None = None
    server: JSONDict | None = None
    error: str | None = None
    wall: float = 0.0


class _Worker:
    """A worker subprocess with a JSON-lines stdout and a captured stderr tail."""

    def __init__(self, proc: asyncio.subprocess.Process, role: str) -> None:
        self.proc = proc
        self.role = role
        self.stderr = ""
        self._stderr_task = asyncio.ensure_future(self._collect_stderr())

    @classmethod
    async def spawn(cls, spec: Spec) -> _Worker:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.worker",
            spec.to_json(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(ROOT),
            env=env,
        )
        return cls(proc, spec.role)

    async def _collect_stderr(self) -> None:
        assert self.proc.stderr is not None
        while True:
            chunk = await self.proc.stderr.read(4096)
            if not chunk:
                return
            self.stderr = (self.stderr + chunk.decode("utf-8", "replace"))[-STDERR_TAIL:]

    async def next_event(self, timeout: float) -> JSONDict:
        """The next JSON event on stdout; raises TimeoutError / EOFError."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.role} timed out after {timeout:.0f} s")
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), remaining)
            except asyncio.TimeoutError:
                raise TimeoutError(f"{self.role} timed out after {timeout:.0f} s") from None
            if not line:
                await self.finish(2.0)
                raise EOFError(
                    f"{self.role} exited (code {self.proc.returncode}) without a result"
                    + self.stderr_hint()
                )
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and "event" in event:
                    return event

    def stderr_hint(self) -> str:
        tail = self.stderr.strip().splitlines()[-3:]
        return (": " + " | ".join(tail)) if tail else ""

    async def send(self, text: str) -> None:
        if self.proc.stdin is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            self.proc.stdin.write(text.encode())
            await self.proc.stdin.drain()

    async def finish(self, timeout: float) -> None:
        """Wait for the process to exit; kill it if it does not in time."""
        if self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._stderr_task, 2.0)
        if self.proc.stdin is not None:
            with contextlib.suppress(Exception):
                self.proc.stdin.close()


def _result_error(role: str, event: JSONDict) -> str | None:
    if event.get("event") != "result":
        return f"{role}: unexpected event {event.get('event')!r}"
    if not event.get("ok"):
        return f"{role}: {event.get('error', 'failed')}"
    return None


async def run_measurement(server_spec: Spec, client_spec: Spec, timeout: float) -> RepResult:
    """Start the server, run the client against it, stop the server; collect both sides."""
    t0 = time.perf_counter()
    server: _Worker | None = None
    client: _Worker | None = None
    result = RepResult(ok=False)
    try:
        server = await _Worker.spawn(server_spec)
        ready = await server.next_event(READY_TIMEOUT)
        if ready.get("event") != "ready":
            result.error = _result_error("server", ready) or "server: not ready"
            return result
        spec = dataclasses.replace(client_spec, port=int(ready["port"]))
        client = await _Worker.spawn(spec)
        cres = await client.next_event(timeout)
        await server.send("stop\n")
        sres = await server.next_event(STOP_TIMEOUT)
        errors = [e for e in (_result_error("client", cres), _result_error("server", sres)) if e]
        result.client = cres.get("metrics")
        result.server = sres.get("metrics")
        if errors:
            result.error = "; ".join(errors)
        else:
            result.ok = True
        return result
    except (TimeoutError, EOFError, OSError) as exc:
        result.error = str(exc) or type(exc).__name__
        return result
    finally:
        grace = 5.0 if result.ok else 0.0  # after a failure: kill at once
        for worker in (client, server):
            if worker is not None:
                await worker.finish(grace)
        result.wall = time.perf_counter() - t0

"""``rudp bench`` output: iperf3-style lines, a live display, JSON, and plots.

Units follow iperf3: transfers in binary multiples of bytes (KBytes = 1024 bytes),
bitrates in decimal multiples of bits per second (Mbits/sec = 10^6 bit/s).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import IO, Any

__all__ = [
    "LiveDisplay",
    "PlainDisplay",
    "bitrate",
    "interval_lines",
    "plot",
    "size",
    "summary_lines",
]

SEPARATOR = "- " * 25
#: Seconds over which the plot's throughput is averaged (from the fine trace).
RATE_WINDOW = 0.25
HEADER = "[ ID] Interval           Transfer     Bitrate"
SENDER_COLUMNS = "         Retr  Cwnd        SRTT"


def _scaled(value: float, base: int, units: tuple[str, ...]) -> str:
    """iperf3's adaptive format: 3 significant digits, the largest fitting unit."""
    i = 0
    while i < len(units) - 1 and abs(value) >= base:
        value /= base
        i += 1
    if abs(value) < 9.995:
        text = f"{value:.2f}"
    elif abs(value) < 99.95:
        text = f"{value:.1f}"
    else:
        text = f"{value:.0f}"
    return f"{text} {units[i]}"


def size(nbytes: float) -> str:
    """``5.88 MBytes`` (binary multiples)."""
    return _scaled(float(nbytes), 1024, ("Bytes", "KBytes", "MBytes", "GBytes", "TBytes"))


def bitrate(bits_per_second: float) -> str:
    """``49.3 Mbits/sec`` (decimal multiples)."""
    units = ("bits/sec", "Kbits/sec", "Mbits/sec", "Gbits/sec", "Tbits/sec")
    return _scaled(float(bits_per_second), 1000, units)


def _rtt(srtt: float | None) -> str:
    if srtt is None:
        return "-"
    if srtt < 0.001:
        return f"{srtt * 1e6:.0f} us"
    return f"{srtt * 1e3:.2f} ms" if srtt < 0.1 else f"{srtt * 1e3:.0f} ms"


def _tag(row: dict[str, Any], bidir: bool, client: bool) -> str:
    """iperf3's bidirectional tags: [TX-C] a stream the client sends on, [RX-S] the
    same stream as the server sees it."""
    if not bidir:
        return ""
    sends = (row.get("direction") == "up") == client
    return f"[{'TX' if sends else 'RX'}-{'C' if client else 'S'}]"


def unmap(host: Any) -> str:
    """``::ffff:192.0.2.1`` -> ``192.0.2.1`` (a dual-stack socket's IPv4 peers)."""
    text = str(host)
    return text[7:] if text.startswith("::ffff:") and "." in text else text


def _row(label: str, row: dict[str, Any], tag: str, extra: str = "") -> str:
    span = f"{row['start']:6.2f}-{row['end']:<6.2f} sec"
    line = (
        f"[{label:>3}]{tag} {span}  {size(row['bytes']):>12}  {bitrate(row['bits_per_second']):>15}"
    )
    return line + extra


def header(sending: bool, bidir: bool) -> str:
    pad = " " * 6 if bidir else ""
    return HEADER.replace("[ ID]", "[ ID]" + pad) + (SENDER_COLUMNS if sending else "")


def interval_lines(report: dict[str, Any], *, bidir: bool, client: bool) -> list[str]:
    """The lines of one interval report: one per stream, then [SUM] lines."""
    out = []
    for row in report["streams"]:
        extra = ""
        if row.get("role") == "sender":
            cwnd = row.get("cwnd")
            extra = f"  {row.get('retransmits', 0):>4}  {size(cwnd) if cwnd else '-':>10}"
            extra += f"  {_rtt(row.get('srtt')):>9}"
        out.append(_row(str(row["id"]), row, _tag(row, bidir, client), extra))
    sums = report.get("sum", {})
    if len(report["streams"]) > len(sums):  # several streams share a (direction, role)
        for key in sorted(sums, reverse=not client):
            agg = sums[key]
            extra = f"  {agg.get('retransmits', 0):>4}" if agg.get("role") == "sender" else ""
            out.append(_row("SUM", agg, _tag(agg, bidir, client), extra))
    return out


def summary_lines(result: dict[str, Any], *, client: bool = True) -> list[str]:
    """The end-of-test summary: per stream a sender and a receiver line, then sums."""
    end = result["end"]
    bidir = bool(result["start"]["test"].get("bidir"))
    out = [SEPARATOR, header(False, bidir) + "         Retr"]

    def line(label: str, row: dict[str, Any], role: str) -> str:
        if not row:
            return f"[{label:>3}] (no {role} report)"
        tagged = row
        extra = f"  {row['retransmits']:>4}" if role == "sender" else "      "
        return _row(label, row, _tag(tagged, bidir, client), extra) + f"  {role:>12}"

    for st in end["streams"]:
        out.append(line(str(st["id"]), st.get("sender") or {}, "sender"))
        out.append(line(str(st["id"]), st.get("receiver") or {}, "receiver"))
    for direction in ("up", "down"):
        agg = end.get(f"sum_{direction}")
        if agg and sum(st["direction"] == direction for st in end["streams"]) > 1:
            out.append(line("SUM", agg["sender"], "sender"))
            out.append(line("SUM", agg["receiver"], "receiver"))
    errors = []
    for st in end["streams"]:
        for role in ("sender", "receiver"):
            if (st.get(role) or {}).get("error"):
                errors.append(f"[{st['id']:>3}] {role} error: {st[role]['error']}")
    return out + errors


def start_lines(info: dict[str, Any], *, client: bool = True) -> list[str]:
    """What each side prints once a test is set up."""
    test = info["test"]
    if client:
        to = info["connecting_to"]
        out = [f"Connecting to host {to['host']}, port {to['port']} (UDP)"]
    else:
        peer = info["peer"] or ["?", 0]
        out = [f"Accepted connection from {unmap(peer[0])}, port {peer[1]}"]
    for s in info["streams"]:
        local, remote = s.get("local") or ["?", 0], s.get("remote") or ["?", 0]
        out.append(
            f"[{s['id']:>3}] local {unmap(local[0])} port {local[1]} connected to "
            f"{unmap(remote[0])} port {remote[1]} "
            f"(TCP ports {s.get('local_tcp_port')} > {s.get('remote_tcp_port')})"
        )
    if test["bidir"]:
        what = "both ways"
    else:
        what = "server sends (reverse)" if test["reverse"] else "client sends"
    how = f"{size(test['bytes'])}" if test.get("bytes") else f"{test['time']:g} s"
    server = info.get("server") or {}
    out.append(
        f"rudp {test['cc']}, MSS {test['mss']}, {how}, {test['parallel']} stream(s) {what}"
        + (f"; server rudp {server.get('version')}" if server.get("version") else "")
    )
    return out


class PlainDisplay:
    """Interval and summary lines on a text stream (not a terminal, or no rich)."""

    def __init__(self, out: IO[str] | None = None, *, client: bool = True) -> None:
        self.out = out if out is not None else sys.stdout
        self.client = client
        self._bidir = False
        self._headed = False

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def start(self, info: dict[str, Any]) -> None:
        self._bidir = bool(info["test"].get("bidir"))
        self._headed = False
        for line in start_lines(info, client=self.client):
            self.say(line)

    def interval(self, report: dict[str, Any]) -> None:
        if not self._headed:
            sending = any(r.get("role") == "sender" for r in report["streams"])
            self.say(header(sending, self._bidir))
            self._headed = True
        for line in interval_lines(report, bidir=self._bidir, client=self.client):
            self.say(line)

    def summary(self, result: dict[str, Any]) -> None:
        for line in summary_lines(result, client=self.client):
            self.say(line)

    async def __aenter__(self) -> PlainDisplay:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class LiveDisplay(PlainDisplay):
    """On a terminal: the same lines, coloured, above a live progress bar (rich)."""

    def __init__(self, total: float, by_bytes: bool) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console()
        self._total = total
        self._by_bytes = by_bytes
        self._done = 0.0
        self._rate = ""
        self.progress = Progress(
            TextColumn("[bold]rudp bench"),
            BarColumn(),
            TextColumn("{task.fields[what]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._task = self.progress.add_task("bench", total=total, what="")
        self._ticker: asyncio.Task[None] | None = None
        self._t0 = 0.0

    def say(self, line: str) -> None:
        self.progress.console.print(line, highlight=False, markup=False)

    def start(self, info: dict[str, Any]) -> None:
        super().start(info)
        self._t0 = asyncio.get_running_loop().time()

    def interval(self, report: dict[str, Any]) -> None:
        super().interval(report)
        total = sum(a["bits_per_second"] for a in report.get("sum", {}).values())
        self._rate = bitrate(total)
        if self._by_bytes:
            self._done += sum(
                a["bytes"] for a in report.get("sum", {}).values() if a["role"] == "sender"
            ) or sum(a["bytes"] for a in report.get("sum", {}).values())
            self.progress.update(self._task, completed=min(self._done, self._total))
        self.progress.update(self._task, what=self._rate)

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.1)
            if not self._by_bytes and self._t0:
                self.progress.update(self._task, completed=min(loop.time() - self._t0, self._total))

    async def __aenter__(self) -> LiveDisplay:
        self.progress.start()
        self._ticker = asyncio.ensure_future(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self.progress.stop()


# --------------------------------------------------------------------- plot
def plot(result: dict[str, Any], path: str, title: str | None = None) -> None:
    """Throughput, cwnd and smoothed RTT over time, one line per stream, as a PNG
    (or any format matplotlib infers from ``path``). Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    test = result["start"]["test"]
    # Throughput: each stream's sender-side intervals (bytes acknowledged), from the
    # side that sent it; cwnd/RTT: the senders' fine trace when there is one.
    sides: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = [
        (result.get("intervals", []), result.get("trace", [])),
        (result.get("server_intervals", []), result.get("server_trace", [])),
    ]
    fig, (ax_rate, ax_cwnd, ax_rtt) = plt.subplots(3, 1, sharex=True, figsize=(9, 8))
    for intervals, trace in sides:
        series: dict[int, list[tuple[float, float]]] = {}
        fine_rows: dict[int, list[dict[str, Any]]] = {}
        for row in trace:
            if row.get("role") == "sender":
                fine_rows.setdefault(row["id"], []).append(row)
        if fine_rows:  # from the trace: acknowledged bytes over a sliding RATE_WINDOW
            for sid, rows in fine_rows.items():
                j = 0
                for i, row in enumerate(rows):
                    while row["t"] - rows[j]["t"] > RATE_WINDOW:
                        j += 1
                    dt = row["t"] - rows[j]["t"]
                    if i > j and dt > 0:
                        rate = (row["progress"] - rows[j]["progress"]) * 8 / dt / 1e6
                        series.setdefault(sid, []).append((row["t"] - dt / 2, rate))
        else:
            for report in intervals:
                for row in report["streams"]:
                    if row.get("role") == "sender":
                        mid = (row["start"] + row["end"]) / 2
                        rate = row["bits_per_second"] / 1e6
                        series.setdefault(row["id"], []).append((mid, rate))
        for sid, points in sorted(series.items()):
            ax_rate.plot([p[0] for p in points], [p[1] for p in points], label=f"stream {sid}")
        fine: dict[int, list[dict[str, Any]]] = {}
        for row in trace:
            if row.get("role") == "sender":
                fine.setdefault(row["id"], []).append(row)
        if not fine:  # no trace: the interval reports' end-of-interval values
            for report in intervals:
                for row in report["streams"]:
                    if row.get("role") == "sender":
                        fine.setdefault(row["id"], []).append(dict(row, t=row["end"]))
        for sid, rows in sorted(fine.items()):
            ts = [r["t"] for r in rows]
            ax_cwnd.plot(ts, [(r.get("cwnd") or 0) / 1024 for r in rows], label=f"stream {sid}")
            ax_rtt.plot(
                ts,
                [(r.get("srtt") or 0) * 1e3 for r in rows],
                label=f"stream {sid}",
            )
    ax_rate.set_ylabel("throughput (Mbit/s)")
    ax_cwnd.set_ylabel("cwnd (KiB)")
    ax_rtt.set_ylabel("smoothed RTT (ms)")
    ax_rtt.set_xlabel("time since the test started (s)")
    for ax in (ax_rate, ax_cwnd, ax_rtt):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize="small")
    to = result["start"]["connecting_to"]
    fig.suptitle(
        title
        or f"rudp bench to {to['host']} port {to['port']}: {test['cc']}, MSS {test['mss']}, "
        f"{test['parallel']} stream(s)"
        + (", both ways" if test["bidir"] else ", reverse" if test["reverse"] else "")
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

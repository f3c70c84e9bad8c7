"""Scenarios run in the simulator: bulk flows over one bottleneck, a lost tail segment.

Every scenario is described by a picklable :class:`Job` and run by :func:`run_job`
in a fresh :class:`rudp.sim.Network`, so jobs can run in any process, in any order,
and give the same numbers for the same seed.
"""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rudp import Config
from rudp.engine import Connection, Endpoint
from rudp.sim import LinkConfig, Network
from rudp.sim.host import Host

from .model import (
    RECEIVER,
    SENDERS,
    SEQ_MASK,
    SERVER_PORT,
    FlowMeter,
    ReceiverProbe,
    SenderGroup,
    Sink,
    Source,
    fixed_isn,
    sender_port,
)

JSONDict = dict[str, Any]

#: Engine configuration shared by every flow (see the README section).
MSS = 1400
INITIAL_CWND = 10
#: Mathis et al. 1997: throughput <= MSS / RTT * C / sqrt(p), C = sqrt(3/2).
MATHIS_C = math.sqrt(1.5)
#: Per-flow byte budget: relative sequence offsets must stay below 2**31.
MAX_FLOW_BYTES = 2**31 - 2**24


@dataclass(frozen=True, slots=True)
class PathSpec:
    """One path: bottleneck rate, base RTT (propagation), buffer and impairments."""

    rate_mbps: float
    rtt_ms: float
    buffer_bdp: float
    loss: float = 0.0
    #: Also drop ACKs with probability ``loss`` (the issue's "1% each way").
    ack_loss: bool = False
    reorder: float = 0.0
    reorder_delay_ms: float = 0.0
    #: Uniform random extra delay in [0, ack_jitter_ms) on the ACK path (FIFO:
    #: never reorders). Fairness jobs use it against phase effects (see plan.py).
    ack_jitter_ms: float = 0.0

    @property
    def rate(self) -> float:
        """Bottleneck rate in bytes per second (of UDP payload, as the simulator counts)."""
        return self.rate_mbps * 1e6 / 8

    @property
    def rtt(self) -> float:
        """Round-trip propagation delay in seconds."""
        return self.rtt_ms / 1000

    @property
    def bdp(self) -> float:
        """Bandwidth-delay product in bytes: rate x round-trip propagation delay."""
        return self.rate * self.rtt

    @property
    def queue_limit(self) -> int:
        return max(1, round(self.buffer_bdp * self.bdp))

    def bottleneck(self) -> LinkConfig:
        """The data direction: senders -> receiver."""
        extra: dict[str, Any] = {}
        if self.reorder:
            extra = {"reorder": self.reorder, "reorder_delay": self.reorder_delay_ms / 1000}
        return LinkConfig(
            delay=self.rtt / 2,
            loss=self.loss,
            rate=self.rate,
            queue_limit=self.queue_limit,
            **extra,
        )

    def ack_path(self) -> LinkConfig:
        """The ACK direction: receiver -> senders, same delay, no rate limit."""
        return LinkConfig(
            delay=self.rtt / 2,
            jitter=self.ack_jitter_ms / 1000,
            loss=self.loss if self.ack_loss else 0.0,
        )

    def engine_buffer(self) -> int:
        """rcv_buf/snd_buf: 4 x (BDP + queue), so flow control never limits a flow."""
        return min(1 << 30, max(256 * 1024, int(4 * (self.bdp + self.queue_limit))))

    def as_dict(self) -> JSONDict:
        d = dataclasses.asdict(self)
        d.update(bdp_bytes=self.bdp, queue_limit_bytes=self.queue_limit)
        return d


@dataclass(frozen=True, slots=True)
class Job:
    """One simulation. ``kind`` is ``grid``, ``util``, ``reorder``, ``fair``, ``mixed``
    or ``tail``; ``controllers`` names one controller per flow."""

    kind: str
    controllers: tuple[str, ...]
    path: PathSpec
    warmup: float
    measure: float
    seed: int
    stagger: float = 0.0
    size: int = 0  # tail: bytes of the transfer

    @property
    def key(self) -> str:
        p = self.path
        parts = [
            self.kind,
            "+".join(self.controllers),
            f"{p.rate_mbps:g}M",
            f"{p.rtt_ms:g}ms",
            f"{p.buffer_bdp:g}BDP",
            f"loss{p.loss:g}",
        ]
        if p.ack_loss:
            parts.append("eachway")
        if p.reorder:
            parts.append(f"reorder{p.reorder:g}@{p.reorder_delay_ms:g}ms")
        return "/".join(parts)

    def cost(self) -> float:
        """Rough relative wall cost (segments simulated), to start long jobs first."""
        if self.kind == "tail":
            return self.size / MSS
        n = len(self.controllers)
        return self.path.rate * (self.warmup + self.measure + self.stagger * (n - 1)) / MSS

    def check(self) -> None:
        if self.kind != "tail":
            span = self.warmup + self.measure + self.stagger * len(self.controllers)
            if self.path.rate * span > MAX_FLOW_BYTES:
                raise ValueError(
                    f"{self.key}: {self.path.rate * span / 1e9:.1f} GB through one flow is "
                    "more than the wire meters can count (2**31 bytes); shorten the run"
                )


def engine_config(controller: str, path: PathSpec) -> Config:
    buf = path.engine_buffer()
    return Config(
        mss=MSS,
        rcv_buf=buf,
        snd_buf=buf,
        initial_cwnd=INITIAL_CWND,
        congestion_control=controller,
    )


def mathis_Bps(path: PathSpec, mss: int, base_rtt: float) -> float | None:
    """The Mathis bound in payload bytes per second, or None without loss."""
    if path.loss <= 0:
        return None
    return mss / base_rtt * MATHIS_C / math.sqrt(path.loss)


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (None if empty)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def jain(values: list[float]) -> float | None:
    """Jain's fairness index (sum x)^2 / (n sum x^2): 1 = equal shares, 1/n = one takes all."""
    sq = sum(v * v for v in values)
    if not values or sq == 0:
        return None
    return sum(values) ** 2 / (len(values) * sq)


def _engine(conn: Connection | None) -> JSONDict:
    if conn is None:
        return {}
    stats: Mapping[str, Any] = conn.stats()
    return {k: v for k, v in stats.items() if isinstance(v, (int, float, str)) or v is None}


class _Flows:
    """A network of ``len(controllers)`` senders (one group) and the receiver."""

    def __init__(self, job: Job, *, limit: int | None = None, target: int | None = None) -> None:
        path = job.path
        self.job = job
        self.net = net = Network(seed=job.seed)
        isn = fixed_isn(job.seed)
        self.meters: dict[int, FlowMeter] = {}
        rcv_cfg = Config(mss=MSS, rcv_buf=path.engine_buffer(), snd_buf=path.engine_buffer())
        self.receiver = Host(Endpoint(rcv_cfg, isn=isn, seed=job.seed))
        self.sinks: list[Sink] = []

        def sink() -> Sink:
            s = Sink(self.meters, target)
            self.sinks.append(s)
            return s

        self.receiver.accept_factory = sink
        self.receiver.endpoint.listen(SERVER_PORT)
        self.group = SenderGroup()
        net.add_node(ReceiverProbe(self.receiver, self.meters), RECEIVER)
        net.add_node(self.group, SENDERS)
        net.set_link(SENDERS, RECEIVER, path.bottleneck())
        net.set_link(RECEIVER, SENDERS, path.ack_path())
        self.sources: list[Source] = []
        self.conns: list[Connection | None] = []
        self.flow_meters: list[FlowMeter] = []
        for i, cc in enumerate(job.controllers):
            port = sender_port(i)
            meter = self.meters[port] = FlowMeter(port)
            self.flow_meters.append(meter)
            host = Host(Endpoint(engine_config(cc, path), isn=isn, seed=job.seed + 1 + i))
            self.group.add(port, host, meter)
            source = Source(limit)
            self.sources.append(source)
            self.conns.append(None)
            net.call_at(i * job.stagger, self._starter(i, host, source, port))

    def _starter(self, i: int, host: Host, source: Source, port: int) -> Callable[[], None]:
        def start() -> None:
            self.conns[i] = host.connect(
                source, RECEIVER, SERVER_PORT, self.net.now, local_port=port
            )

        return start

    def snapshot(self) -> JSONDict:
        receivers = {s.meter.port: s.conn for s in self.sinks if s.meter is not None}
        return {
            "t": self.net.now,
            "flows": [
                {
                    "wire": m.snapshot(),
                    "engine": _engine(c),
                    "receiver_engine": _engine(receivers.get(m.port)),
                }
                for m, c in zip(self.flow_meters, self.conns, strict=True)
            ],
            "bottleneck": dataclasses.asdict(self.net.link_stats(SENDERS, RECEIVER)),
            "ack_path": dataclasses.asdict(self.net.link_stats(RECEIVER, SENDERS)),
        }


#: Engine statistics that are levels, not counters (no difference is taken).
_GAUGES = frozenset(
    {
        "cwnd",
        "ssthresh",
        "snd_wnd",
        "rcv_wnd",
        "snd_mss",
        "send_buffered",
        "recv_buffered",
        "pacing_rate",
        "bytes_in_flight",
    }
)


def _delta(a: Mapping[str, Any], b: Mapping[str, Any]) -> JSONDict:
    """Differences of the integer counters in ``b`` and ``a`` (floats are levels)."""
    return {
        k: v - a.get(k, 0)
        for k, v in b.items()
        if isinstance(v, int) and not isinstance(v, bool) and k not in _GAUGES
    }


def _shape(meter: FlowMeter) -> tuple[int, int]:
    """(payload, header) of a full-sized data segment as seen on the wire."""
    if meter.max_payload:
        return meter.max_payload, meter.hdr_at_max
    return MSS, 20


def _flow_result(
    job: Job, i: int, meter: FlowMeter, s0: JSONDict, s1: JSONDict, measure: float
) -> JSONDict:
    path = job.path
    w0, w1 = s0["flows"][i]["wire"], s1["flows"][i]["wire"]
    e0, e1 = s0["flows"][i]["engine"], s1["flows"][i]["engine"]
    wire = _delta(w0, w1)
    engine = _delta(e0, e1)
    receiver = _delta(s0["flows"][i]["receiver_engine"], s1["flows"][i]["receiver_engine"])
    payload, header = _shape(meter)
    max_goodput = path.rate * payload / (payload + header)
    base_rtt = path.rtt + (payload + header) / path.rate
    # Goodput: payload bytes that reached the receiver for the first time in the
    # window. (What the application read in order can exceed the link rate in a
    # window that starts while a hole holds data back; it is kept as app_*.)
    goodput = (wire["rcv_bytes"] - wire["dup_bytes"]) / measure
    app_goodput = wire["delivered"] / measure
    samples = sorted(meter.rtt_samples)
    p50 = percentile(samples, 50)
    sent = wire["sent_bytes"]
    return {
        "controller": job.controllers[i],
        "state_end": e1.get("state"),
        "goodput_Bps": goodput,
        "goodput_pct": 100 * goodput / max_goodput,
        "goodput_raw_pct": 100 * goodput / path.rate,
        "app_goodput_Bps": app_goodput,
        "app_goodput_pct": 100 * app_goodput / max_goodput,
        "retx_pct": 100 * wire["retx_bytes"] / sent if sent else None,
        # Unneeded retransmissions: data segments the receiving TCP already had
        # (what it reports with D-SACK). The wire meter's count also includes
        # originals that arrived but that the receiver discarded, e.g. by PAWS
        # (RFC 7323 §5.3) after a retransmission filled the hole before them.
        "spurious_segments": receiver.get("dup_data_segments", 0),
        "paws_discarded": receiver.get("paws_drops", 0),
        "wire_dup_bytes": wire["dup_bytes"],
        "wire_dup_segments": wire["dup_segs"],
        "wire_dup_pct": 100 * wire["dup_bytes"] / sent if sent else None,
        "rtt_p50_s": p50,
        "rtt_p90_s": percentile(samples, 90),
        "rtt_p99_s": percentile(samples, 99),
        # Over the whole run (warm-up included): the empty-queue RTT, if ever seen.
        "rtt_min_s": meter.min_rtt if math.isfinite(meter.min_rtt) else None,
        "rtt_samples": len(samples),
        "rtt_inflation": p50 / base_rtt if p50 is not None else None,
        "base_rtt_s": base_rtt,
        "srtt_end_s": e1.get("srtt"),  # the sender's own estimate, for comparison
        "segment_payload": payload,
        "segment_header": header,
        "max_goodput_Bps": max_goodput,
        "wire": wire,
        "engine_delta": engine,
        "engine_end": e1,
        "receiver_engine_delta": receiver,
        # Cross-check: payload bytes the engine says it sent vs bytes seen leaving it.
        "engine_bytes_sent_matches_wire": (
            engine.get("bytes_sent") == wire["sent_bytes"] if "bytes_sent" in engine else None
        ),
    }


def run_flows(job: Job) -> JSONDict:
    """Bulk flows from t = i * stagger; measure after the last start + warm-up."""
    flows = _Flows(job)
    net = flows.net
    n = len(job.controllers)
    start = (n - 1) * job.stagger + job.warmup
    net.run_for(start)
    s0 = flows.snapshot()
    for m in flows.flow_meters:
        m.measuring = True
    net.run_for(job.measure)
    s1 = flows.snapshot()
    per_flow = [
        _flow_result(job, i, m, s0, s1, job.measure) for i, m in enumerate(flows.flow_meters)
    ]
    goodputs = [f["goodput_Bps"] for f in per_flow]
    total = sum(goodputs)
    for f in per_flow:
        f["share_pct"] = 100 * f["goodput_Bps"] / total if total else None
    payload, header = _shape(flows.flow_meters[0])
    base_rtt = job.path.rtt + (payload + header) / job.path.rate
    max_goodput = job.path.rate * payload / (payload + header)
    mathis = mathis_Bps(job.path, payload, base_rtt)
    bottleneck = _delta(s0["bottleneck"], s1["bottleneck"])
    return {
        "key": job.key,
        "kind": job.kind,
        "controllers": list(job.controllers),
        "path": job.path.as_dict(),
        "warmup_s": job.warmup,
        "measure_s": job.measure,
        "measure_from_s": start,
        "stagger_s": job.stagger,
        "seed": job.seed,
        "flows": per_flow,
        "total_goodput_pct": 100 * total / max_goodput,
        "jain": jain(goodputs) if n > 1 else None,
        "mathis_Bps": mathis,
        "mathis_pct": 100 * mathis / max_goodput if mathis is not None else None,
        "bottleneck": bottleneck,
        "ack_path": _delta(s0["ack_path"], s1["ack_path"]),
        "unroutable_acks": flows.group.unroutable,
        "events": net.stats.events,
    }


def _tail_once(job: Job, drop: bool) -> JSONDict:
    size = job.size
    flows = _Flows(job, limit=size, target=size)
    net = flows.net
    meter = flows.flow_meters[0]
    meter.watch_end = size
    dropped_at: list[float] = []

    def rule(data: bytes, now: float) -> bool:
        # Drop the first transmission of the segment that carries the last byte.
        if dropped_at or meter.base is None:
            return False
        n = len(data) - (data[12] >> 4) * 4
        if n <= 0:
            return False
        rel = (int.from_bytes(data[4:8], "big") - meter.base) & SEQ_MASK
        if rel + n != size:
            return False
        dropped_at.append(now)
        return True

    if drop:
        flows.group.drop = rule
    timeout = 120.0
    net.run_until(lambda: bool(flows.sinks) and flows.sinks[0].target_at is not None, timeout)
    sink = flows.sinks[0] if flows.sinks else None
    source = flows.sources[0]
    done_at = sink.target_at if sink is not None else None
    payload, header = _shape(meter)
    base_rtt = job.path.rtt + (payload + header) / job.path.rate
    engine = _engine(flows.conns[0])
    out: JSONDict = {
        "completed": done_at is not None,
        "completion_s": (
            done_at - source.established_at
            if done_at is not None and source.established_at is not None
            else None
        ),
        "base_rtt_s": base_rtt,
        "tail_transmissions": list(meter.watch_times),
        "engine_end": engine,
        "rto_expiries": engine.get("rto_expiries"),
        "retransmissions": engine.get("retransmissions"),
        "dropped": flows.group.dropped,
    }
    if drop:
        t0 = dropped_at[0] if dropped_at else None
        out["dropped_at_s"] = t0
        retx = [t for t in meter.watch_times if t0 is not None and t > t0]
        out["retransmit_after_rtts"] = (retx[0] - t0) / base_rtt if retx and t0 else None
        out["recovery_rtts"] = (
            (done_at - t0) / base_rtt if done_at is not None and t0 is not None else None
        )
    return out


def run_tail(job: Job) -> JSONDict:
    """A finite transfer whose last data segment is lost once, vs the same without loss."""
    base = _tail_once(job, drop=False)
    lost = _tail_once(job, drop=True)
    extra = None
    if base["completion_s"] is not None and lost["completion_s"] is not None:
        extra = (lost["completion_s"] - base["completion_s"]) / lost["base_rtt_s"]
    return {
        "key": job.key,
        "kind": job.kind,
        "controllers": list(job.controllers),
        "path": job.path.as_dict(),
        "size": job.size,
        "seed": job.seed,
        "baseline": base,
        "lost_tail": lost,
        "extra_rtts": extra,
        "recovered_without_rto": bool(lost["completed"] and lost["rto_expiries"] == 0),
    }


def run_job(job: Job) -> JSONDict:
    """Run one job; an exception inside the engine becomes the job's ``error``."""
    t0 = time.perf_counter()
    c0 = time.process_time()
    try:
        job.check()
        result = run_tail(job) if job.kind == "tail" else run_flows(job)
    except Exception:
        result = {
            "key": job.key,
            "kind": job.kind,
            "controllers": list(job.controllers),
            "path": job.path.as_dict(),
            "error": traceback.format_exc(),
        }
    result["wall_s"] = time.perf_counter() - t0
    result["cpu_s"] = time.process_time() - c0
    return result

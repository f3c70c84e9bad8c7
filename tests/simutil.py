"""Shared helpers for simulator-driven tests (and the hypothesis settings of the
implementation-equivalence tests)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from hypothesis import HealthCheck, settings

from rudp import Config
from rudp.engine import Endpoint
from rudp.sim import LinkConfig, Network
from rudp.sim.host import BulkApp, Host

#: Hypothesis settings for comparing two implementations: repeatable examples, no
#: example database, no deadline (the machine is shared).
FAST = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

A = ("10.0.0.1", 4000)
B = ("10.0.0.2", 5000)


@dataclass
class Outcome:
    net: Network
    client: BulkApp
    server: BulkApp
    sent_c2s: bytes
    sent_s2c: bytes
    client_host: Host
    server_host: Host

    @property
    def ok(self) -> bool:
        return (
            hashlib.sha256(self.server.received).digest() == hashlib.sha256(self.sent_c2s).digest()
            and hashlib.sha256(self.client.received).digest()
            == hashlib.sha256(self.sent_s2c).digest()
            and self.client.error is None
            and self.server.error is None
        )


def pair(
    link: LinkConfig | None,
    *,
    seed: int,
    config: Config | None = None,
    server_config: Config | None = None,
    back: LinkConfig | None = None,
    backlog: int = 128,
    endpoint_seeds: tuple[int, int] = (1, 2),
) -> tuple[Network, Host, Host]:
    """A network with a client host at A and a server host at B listening on port 80."""
    net = Network(seed=seed)
    cfg = config or Config()
    ch = Host(Endpoint(cfg, seed=endpoint_seeds[0]))
    sh = Host(Endpoint(server_config or cfg, seed=endpoint_seeds[1]))
    net.add_node(ch, A)
    net.add_node(sh, B)
    if link is not None:
        net.set_link(A, B, link)
        net.set_link(B, A, back or link)
    sh.endpoint.listen(80, backlog=backlog)
    return net, ch, sh


def transfer(
    link: LinkConfig | None,
    c2s: int,
    s2c: int = 0,
    *,
    seed: int = 1,
    config: Config | None = None,
    server_config: Config | None = None,
    timeout: float = 3600.0,
    back: LinkConfig | None = None,
) -> Outcome:
    """Run one connection A -> B:80 moving ``c2s``/``s2c`` random bytes."""
    net, ch, sh = pair(
        link,
        seed=seed,
        config=config,
        server_config=server_config,
        back=back,
        endpoint_seeds=(seed, seed + 1000),
    )
    rnd = random.Random(seed)
    up = rnd.randbytes(c2s)
    down = rnd.randbytes(s2c)
    sh.accept_factory = lambda: BulkApp(down)
    client = BulkApp(up)
    ch.connect(client, B, 80, 0.0)

    def done() -> bool:
        return client.terminated and bool(sh.accepted) and sh.accepted[0].terminated

    net.run_until(done, timeout=timeout)
    server = sh.accepted[0] if sh.accepted else BulkApp()
    return Outcome(net, client, server, up, down, ch, sh)

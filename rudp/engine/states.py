"""Connection states (RFC 9293 §3.3.2) and the transitions rudp performs.

``TRANSITIONS`` is the table of every state change the engine makes, with the
cause; ``Connection.set_state`` refuses anything not listed, and the state
diagram in ``docs/states.md`` is generated from it (``python -m rudp.engine.states``).
"""

from __future__ import annotations

import enum
from typing import Final


class State(enum.Enum):
    """RFC 9293 connection states; the value is the RFC's spelling."""

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"

    def __str__(self) -> str:
        return self.value

    # Members are singletons compared by identity: hash them by identity too, in C,
    # instead of Enum.__hash__ (Python code hashing the name), since the per-segment
    # paths test ``state in <frozenset>``.
    __hash__ = object.__hash__


S = State

# The members as module constants: compiled modules read these as C statics, where
# ``State.X`` is an attribute lookup on the enum class (~60 ns) on per-segment paths.
CLOSED: Final = State.CLOSED
LISTEN: Final = State.LISTEN
SYN_SENT: Final = State.SYN_SENT
SYN_RECEIVED: Final = State.SYN_RECEIVED
ESTABLISHED: Final = State.ESTABLISHED
FIN_WAIT_1: Final = State.FIN_WAIT_1
FIN_WAIT_2: Final = State.FIN_WAIT_2
CLOSE_WAIT: Final = State.CLOSE_WAIT
CLOSING: Final = State.CLOSING
LAST_ACK: Final = State.LAST_ACK
TIME_WAIT: Final = State.TIME_WAIT

#: (from, to) -> cause. The LISTEN state belongs to listeners (see Endpoint.listen);
#: a passive connection is born in SYN-RECEIVED from a listener's SYN.
TRANSITIONS: dict[tuple[State, State], str] = {
    (S.CLOSED, S.SYN_SENT): "connect / snd SYN",
    (S.LISTEN, S.SYN_RECEIVED): "rcv SYN / snd SYN,ACK",
    (S.SYN_SENT, S.ESTABLISHED): "rcv SYN,ACK / snd ACK",
    (S.SYN_SENT, S.SYN_RECEIVED): "rcv SYN (simultaneous open) / snd SYN,ACK",
    (S.SYN_SENT, S.CLOSED): "rcv RST,ACK | SYN timeout | abort",
    (S.SYN_RECEIVED, S.ESTABLISHED): "rcv ACK of SYN",
    (S.SYN_RECEIVED, S.FIN_WAIT_1): "close / snd FIN",
    (S.SYN_RECEIVED, S.CLOSED): "rcv RST | SYN,ACK timeout | abort",
    (S.SYN_RECEIVED, S.CLOSE_WAIT): "rcv ACK of SYN with FIN",
    (S.ESTABLISHED, S.FIN_WAIT_1): "close / snd FIN",
    (S.ESTABLISHED, S.CLOSE_WAIT): "rcv FIN / snd ACK (delayed)",
    (S.ESTABLISHED, S.CLOSED): "rcv RST | timeout | abort",
    (S.FIN_WAIT_1, S.FIN_WAIT_2): "rcv ACK of FIN",
    (S.FIN_WAIT_1, S.CLOSING): "rcv FIN / snd ACK",
    (S.FIN_WAIT_1, S.TIME_WAIT): "rcv FIN,ACK of FIN / snd ACK",
    (S.FIN_WAIT_1, S.CLOSED): "rcv RST | timeout | abort",
    (S.FIN_WAIT_2, S.TIME_WAIT): "rcv FIN / snd ACK",
    (S.FIN_WAIT_2, S.CLOSED): "rcv RST | FIN-WAIT-2 timeout | abort",
    (S.CLOSE_WAIT, S.LAST_ACK): "close / snd FIN",
    (S.CLOSE_WAIT, S.CLOSED): "rcv RST | timeout | abort",
    (S.CLOSING, S.TIME_WAIT): "rcv ACK of FIN",
    (S.CLOSING, S.CLOSED): "rcv RST | timeout | abort",
    (S.LAST_ACK, S.CLOSED): "rcv ACK of FIN | rcv RST | timeout | abort",
    (S.TIME_WAIT, S.CLOSED): "2MSL timeout | new SYN reuses identity (RFC 6191)",
}

#: States in which the connection is synchronized (RFC 9293 §3.5.2 group 3).
SYNCHRONIZED: Final = frozenset(
    {S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK, S.TIME_WAIT}
)


def mermaid() -> str:
    """The state diagram as Mermaid source, generated from :data:`TRANSITIONS`."""

    def node(s: State) -> str:
        return s.name

    lines = ["stateDiagram-v2", "    [*] --> CLOSED"]
    for (a, b), why in TRANSITIONS.items():
        lines.append(f"    {node(a)} --> {node(b)}: {why}")
    lines.append("    CLOSED --> LISTEN: listen (Endpoint.listen)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(mermaid(), end="")

"""The simulated path table for rudp's congestion controllers.

``python -m benchmarks.paths`` (see ``benchmarks/README.md``, "Path table") runs bulk
flows through :mod:`rudp.sim` over a grid of loss, RTT, link rate and buffer size, plus
fairness, reordering and lost-tail scenarios, in virtual time: deterministic for a
seed, and minutes of wall time for the whole table.

Modules: :mod:`.model` (topology and wire meters), :mod:`.scenarios` (one simulation
per :class:`~.scenarios.Job`), :mod:`.plan` (which jobs), :mod:`.report` (tables and
targets), :mod:`.cli` (command line, worker processes, JSON).
"""

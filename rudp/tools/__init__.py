"""User tools built on the public API: ``rudp bench`` and ``rudp tunnel``.

* :mod:`rudp.tools.bench` -- measure a path between two machines (iperf3's habits);
* :mod:`rudp.tools.tunnel` -- carry TCP connections over rudp (kcptun's habits).

The command line (:mod:`rudp.cli`) drives them; they can be used from Python too.
"""

"""rudp against the Linux kernel's TCP: a TUN bridge, a kernel-to-kernel forwarder
over the same impairment, and a benchmark (``python -m benchmarks.linuxpeer``).

See docs/interop-linux.md.
"""

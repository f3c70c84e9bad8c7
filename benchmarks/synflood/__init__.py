"""SYN floods over real UDP sockets on loopback: does a real client still get in?

``python -m benchmarks.synflood`` runs the issue's two floods (100,000 spoofed SYNs
at 25,000/s; 10,000/s for 10 s) against a rudp echo server in its own process,
connects a real client during each and reports how long it took to connect and
echo 100 KB and how much the server's memory grew (targets: 3 s, 32 MB).
"""

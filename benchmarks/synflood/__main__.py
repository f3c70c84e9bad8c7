"""``python -m benchmarks.synflood [--json FILE]``: see the package docstring."""

from __future__ import annotations

import argparse
import json
import sys

from .run import TARGET_MEMORY, TARGET_SECONDS, flood_and_connect

SCENARIOS = (("100,000 SYNs at 25,000/s", 100_000, 25_000), ("10,000/s for 10 s", 100_000, 10_000))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.synflood", description=__doc__)
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    if not sys.platform.startswith("linux"):
        print("needs Linux (spoofed sources are bound to 127.100.x.y addresses)")
        return 2
    results = []
    print(
        f"{'flood':26} {'sent':>8} {'taken in':>9} {'cookies':>8} "
        f"{'client s':>9} {'during':>6} {'mem MB':>7}  targets: <= {TARGET_SECONDS:g} s, "
        f"<= {TARGET_MEMORY >> 20} MB"
    )
    for name, count, rate in SCENARIOS:
        r = flood_and_connect(count, rate)
        r["name"] = name
        results.append(r)
        after = r["after"]
        ok = r["took"] <= TARGET_SECONDS and r["memory_growth"] <= TARGET_MEMORY and r["during"]
        print(
            f"{name:26} {r['sent']['sent']:8d} {after['datagrams_received']:9d} "
            f"{after['syncookies_sent']:8d} {r['took']:9.3f} {r['during']!s:>6} "
            f"{r['memory_growth'] / 2**20:7.1f}  {'PASS' if ok else 'FAIL'}",
            flush=True,
        )
    print(
        "taken in: SYNs the server process read (the kernel drops what it cannot take); "
        "client s: connect + echo 100 KB during the flood"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

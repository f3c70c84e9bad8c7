"""Fuzzing rudp's wire parser and sans-IO engine (see fuzz/README.md).

:mod:`fuzz.harness` holds what every fuzzer shares: two engines joined by an
in-test network the fuzzer drives, an attacker that crafts segments around the live
sequence numbers, and the invariants checked after every step. The hypothesis state
machine (``tests/test_fuzz_stateful.py``) and the atheris targets
(:mod:`fuzz.targets`, run with ``python -m fuzz.run``) both drive it.
"""

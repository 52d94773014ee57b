"""The load benchmark of the relay: `python -m bench` (see the README's Performance section).

A fast fake upstream, a fast webhook receiver and the relay run as separate processes on
loopback; the harness registers watches, lets the relay work for a fixed time and prints the
figures the relay is held to, next to their targets.
"""

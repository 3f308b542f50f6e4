"""``livecast bench``: the fan-out benchmark (docs/benchmarks.md).

A load generator on loopback: it starts the server under test (or targets a
running one), opens N cheap member connections in several client processes,
joins them to R rooms, publishes at a paced rate with a priority mix, and
reports exact delivery counts, seq gaps, latency, drops per priority, the
server's CPU seconds per delivery and its RSS per connection.  ``--baseline``
interleaves runs of a minimal raw writer (``baseline.py``) on the same
workload and prints livecast's cost as a multiple of it.

Layout: ``wire`` (WebSocket bytes, frame scanning), ``member`` (the raw
client protocol), ``clients`` (client processes), ``senders`` (paced
publishing), ``server`` (the process under test: start, /proc readings,
rooms), ``baseline`` (the raw writer), ``run`` (one round), ``report``
(table and JSON line), ``cli`` (flags).
"""

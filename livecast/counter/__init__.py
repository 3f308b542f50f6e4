"""The like-counter service (``livecast counter``): a webhook receiver and a write-back loop.

``settings`` builds its configuration, ``rest`` talks to the REST API,
``app`` wires both to ``livecast.core.likes``.  See docs/counter.md.
"""

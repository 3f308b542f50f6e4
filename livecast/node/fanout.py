"""The hot path: one tick's frame bytes to every member of a room.

Per tick and room the caller builds at most two frames (full, and "lite"
without Low/Lowest messages) and this loop writes the same bytes to every
member's transport: no per-member serialization, coroutine or ``await``.
A member whose outbox (asyncio's buffer plus, once that is non-empty, the
kernel's send queue: ``Connection.buffered``) is past ``soft`` gets the lite
frame, past ``hard`` it is returned for shedding (docs/design.md, "Bounded
outbox").  The ``hold`` member (the sender of the tick's first message, when
nothing is waiting in its outbox) is given the full frame in ``held``
instead of a write: its reply follows in the same write (``Connection.write``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from livecast.node.connection import Connection, kernel_queued


@dataclass(slots=True)
class FanJob:
    """One frame (and its lite variant) on its way to a big room, chunk by chunk.

    A room larger than the chunk size is written in chunks, one per loop
    iteration, so that a 100k-member room does not hold the loop for the whole
    loop; jobs of one room run in order, so frames never overtake each other.
    """

    full: bytes
    lite: bytes | None
    members: list[Connection]  # the room's members when the frame was published
    joined: int = 0  # the room's count of joins then (LocalRoom.joined)
    pos: int = 0
    # senders' replies that must follow their echo (this frame): written
    # once the job is done (LocalHub.after_echo)
    replies: list[tuple[Connection, bytes]] = field(default_factory=list)

    def reply(self) -> None:
        """Write the replies waiting for this job (done, or going no further)."""
        replies, self.replies = self.replies, []
        for conn, data in replies:
            conn.write(data)

    def absorb(self, full: bytes, lite: bytes | None) -> None:
        """Carry the next frame too (this job has not started): back-to-back
        frames in one write.  A room whose fan-out falls behind a tick thus
        queues at most one job behind the running one, and catches up with
        fewer, bigger writes."""
        if self.lite is None and lite is None:
            self.full += full
            return
        self.lite = (self.full if self.lite is None else self.lite) + (
            full if lite is None else lite)
        self.full += full


def fanout(members: Iterable[Connection], full: bytes, lite: bytes | None,
           soft: int, hard: int,
           hold: Connection | None = None) -> tuple[int, int, list[Connection]]:
    """Write ``full`` (or ``lite`` to lagging members); return
    (frames written in full, frames degraded, members to shed).

    ``lite`` None means the batch has nothing droppable: everyone gets ``full``.
    ``lite`` b"" means everything was droppable: lagging members get nothing.
    """
    written = degraded = 0
    shed: list[Connection] = []
    for conn in members:
        transport = conn.transport
        if transport.is_closing():
            continue
        size = transport.get_write_buffer_size()
        if not size:  # the common case: nothing waiting in asyncio's buffer
            if conn is hold:  # its reply comes next: one write for both
                conn.held += full
            else:
                transport.write(full)
            written += 1
            continue
        size += kernel_queued(conn.fd)  # lagging: the kernel's send buffer is full, count it too
        if size > soft and lite is not None:
            if size > hard:
                shed.append(conn)
                continue
            if lite:
                transport.write(lite)
            degraded += 1
        elif size > hard:
            shed.append(conn)
        else:
            transport.write(full)
            written += 1
    return written, degraded, shed

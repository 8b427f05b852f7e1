"""Fan-out of messages to WebSocket clients: one bounded queue per client.

A client that reads slower than messages come loses the oldest *frame* messages (events are
dropped only when its queue holds nothing else): memory per client is bounded, and one slow
client never delays the others. All methods run on the event loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class Subscriber:
    """One client's queue of ``(kind, text)`` messages."""

    def __init__(self, maxlen: int, events_only: bool = False) -> None:
        self.maxlen = maxlen
        self.events_only = events_only
        self.queue: deque[tuple[str, str]] = deque()
        self.dropped = 0
        self.closed = False
        self.wake = asyncio.Event()

    def offer(self, kind: str, text: str) -> int:
        """Queue one message; returns how many were dropped to make room (0 or 1)."""
        if self.events_only and kind != "event":
            return 0
        dropped = 0
        if len(self.queue) >= self.maxlen:
            victim = next((i for i, (k, _) in enumerate(self.queue) if k != "event"), 0)
            del self.queue[victim]
            dropped = 1
            self.dropped += 1
        self.queue.append((kind, text))
        self.wake.set()
        return dropped

    def close(self) -> None:
        self.closed = True
        self.wake.set()

    async def next_batch(self) -> list[tuple[str, str]]:
        """Wait for messages; an empty list once closed."""
        while not self.queue and not self.closed:
            self.wake.clear()
            await self.wake.wait()
        batch = list(self.queue)
        self.queue.clear()
        return batch


class Hub:
    """The set of subscribers; ``publish`` offers messages to all of them."""

    def __init__(self, on_drop: Callable[[int], None] | None = None) -> None:
        self.subscribers: set[Subscriber] = set()
        self.closed = False
        self.done = asyncio.Event()  # set by close(): loops that are not subscribers end
        self._on_drop = on_drop

    def subscribe(self, maxlen: int, events_only: bool = False) -> Subscriber:
        sub = Subscriber(maxlen, events_only)
        if self.closed:
            sub.close()
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def publish(self, messages: list[tuple[str, str]]) -> None:
        dropped = sum(sub.offer(kind, text) for sub in list(self.subscribers)
                      for kind, text in messages)
        if dropped and self._on_drop is not None:
            self._on_drop(dropped)

    def close(self) -> None:
        """End every subscription (server shutdown)."""
        self.closed = True
        self.done.set()
        for sub in list(self.subscribers):
            sub.close()

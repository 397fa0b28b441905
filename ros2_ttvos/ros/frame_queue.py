"""A bounded, closable frame queue: one slot for live cameras, several for replay."""

import threading
from collections import deque
from typing import Any, Deque, Optional


class FrameQueue:
    """FIFO of at most ``capacity`` items; a put into a full queue drops the oldest item.

    With capacity 1 it is the latest-frame slot of a live camera: a frame that was not picked
    up before the next one arrived is dropped (and counted), and no frame is handed out twice.
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._items: Deque[Any] = deque()
        self._capacity = capacity
        self._condition = threading.Condition()
        self._closed = False
        self.dropped = 0

    def put(self, item: Any) -> bool:
        """Add ``item``; returns True when an older item had to be dropped to make room."""
        with self._condition:
            dropped = len(self._items) >= self._capacity
            if dropped:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._condition.notify()
            return dropped

    def get(self) -> Optional[Any]:
        """The oldest item, waiting for one; None once the queue is closed."""
        with self._condition:
            while not self._items and not self._closed:
                self._condition.wait()
            if self._closed:
                return None
            return self._items.popleft()

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()

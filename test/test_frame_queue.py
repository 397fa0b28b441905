"""The node's frame queue: latest-frame slot and bounded replay queue."""

import threading

from ros2_ttvos.ros.frame_queue import FrameQueue


def test_one_slot_keeps_the_latest_and_counts_drops():
    queue = FrameQueue(1)
    assert not queue.put("a")
    assert queue.put("b") and queue.put("c")
    assert queue.dropped == 2
    assert queue.get() == "c"


def test_bounded_queue_is_fifo_and_drops_the_oldest_when_full():
    queue = FrameQueue(3)
    for item in "abcd":
        queue.put(item)
    assert [queue.get() for _ in range(3)] == ["b", "c", "d"] and queue.dropped == 1


def test_close_wakes_a_waiting_consumer():
    queue = FrameQueue(2)
    received = []
    consumer = threading.Thread(target=lambda: received.append(queue.get()))
    consumer.start()
    queue.close()
    consumer.join(timeout=5)
    assert not consumer.is_alive() and received == [None]

"""Tracker results as ROS messages: per-object area, box and visibility."""

import numpy as np
from std_msgs.msg import Header

from ros2_ttvos.ros.conversions import tracked_objects


def test_tracked_objects_area_box_and_visibility():
    labels = np.zeros((6, 8), np.uint8)
    labels[1:3, 2:6] = 1  # 8 pixels, box x 2-5, y 1-2
    labels[5, 7] = 2  # one pixel, confidence under the threshold
    header = Header(frame_id="cam")
    msg = tracked_objects(labels, {1: 0.9, 2: 0.3, 3: 0.8}, header, threshold=0.5)
    assert msg.header.frame_id == "cam"
    first, second, hidden = msg.objects
    assert (first.id, first.area, first.visible) == (1, 8, True)
    assert (first.bbox.x_offset, first.bbox.y_offset, first.bbox.width, first.bbox.height) == (2, 1, 4, 2)
    assert (second.id, second.area, second.visible) == (2, 1, False)  # below the threshold
    assert (hidden.id, hidden.area, hidden.visible, hidden.bbox.width) == (3, 0, False, 0)  # no pixels
    assert abs(first.confidence - 0.9) < 1e-6

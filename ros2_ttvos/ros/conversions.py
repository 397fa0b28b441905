"""The one place where ROS messages become numpy arrays and back: images (no cv_bridge needed),
boxes, and the tracker's per-object results."""

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest

from ttvos_interfaces.msg import TrackedObject, TrackedObjects

# encoding -> (channels, conversion to RGB or None for label images)
COLOUR_ENCODINGS = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
    "8UC3": (3, None),
}
LABEL_ENCODINGS = ("mono8", "8UC1")


class ConversionError(ValueError):
    """An image message the node cannot use (encoding, layout, size)."""


def _pixels(msg: Image, channels: int) -> np.ndarray:
    row_bytes = msg.width * channels
    if msg.step < row_bytes or len(msg.data) < msg.step * msg.height:
        raise ConversionError(
            f"image data too short: {len(msg.data)} bytes for {msg.height} rows of step {msg.step} "
            f"({msg.width} x {channels} bytes of pixels a row)"
        )
    flat = np.frombuffer(msg.data, dtype=np.uint8, count=msg.step * msg.height)
    pixels = flat.reshape(msg.height, msg.step)[:, :row_bytes]
    return pixels.reshape(msg.height, msg.width, channels)


def image_to_rgb(msg: Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an Image in rgb8, bgr8, rgba8, bgra8 or mono8."""
    if msg.encoding not in COLOUR_ENCODINGS:
        raise ConversionError(f"unsupported image encoding {msg.encoding!r}; use one of {sorted(COLOUR_ENCODINGS)}")
    if msg.height == 0 or msg.width == 0:
        raise ConversionError("empty image (0 rows or columns)")
    channels, conversion = COLOUR_ENCODINGS[msg.encoding]
    pixels = _pixels(msg, channels)
    if conversion is None:
        return np.ascontiguousarray(pixels)
    return cv2.cvtColor(np.ascontiguousarray(pixels), conversion)


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a jpeg/png CompressedImage."""
    bgr = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConversionError(f"cannot decode compressed image (format {msg.format!r}, {len(msg.data)} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def image_to_labels(msg: Image) -> np.ndarray:
    """(H, W) uint8 label image from a mono8 / 8UC1 Image."""
    if msg.encoding not in LABEL_ENCODINGS:
        raise ConversionError(f"mask encoding must be mono8 (a label image), got {msg.encoding!r}")
    if msg.height == 0 or msg.width == 0:
        raise ConversionError("empty mask (0 rows or columns)")
    return np.ascontiguousarray(_pixels(msg, 1)[:, :, 0])


def roi_to_box(roi) -> tuple:
    """(x0, y0, x1, y1), ends exclusive, of a sensor_msgs/RegionOfInterest."""
    return (roi.x_offset, roi.y_offset, roi.x_offset + roi.width, roi.y_offset + roi.height)


def box_to_roi(box):
    """A sensor_msgs/RegionOfInterest of (x0, y0, x1, y1), ends exclusive."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return RegionOfInterest(x_offset=x0, y_offset=y0, width=x1 - x0, height=y1 - y0)


def labels_to_image(labels: np.ndarray, header) -> Image:
    """mono8 Image of a (H, W) uint8 label image with the given header."""
    return _array_to_image(labels, "mono8", header)


def rgb_to_image(rgb: np.ndarray, header) -> Image:
    """rgb8 Image of an (H, W, 3) uint8 array with the given header."""
    return _array_to_image(rgb, "rgb8", header)


def tracked_objects(labels: np.ndarray, confidences: dict, header, threshold: float) -> TrackedObjects:
    """TrackedObjects of a tracker step: per object its confidence, whether it is visible (some
    pixels and a confidence of at least ``threshold``), its area in pixels and its bounding box."""
    msg = TrackedObjects(header=header)
    for object_id, confidence in confidences.items():
        mine = (labels == object_id).view(np.uint8)
        area = cv2.countNonZero(mine)  # OpenCV: 15x np.nonzero's speed at 480x854 (4 objects)
        x, y, width, height = cv2.boundingRect(mine)
        bbox = RegionOfInterest(x_offset=x, y_offset=y, width=width, height=height)
        visible = bool(area and confidence >= threshold)
        tracked = TrackedObject(id=object_id, confidence=float(confidence), visible=visible, area=area, bbox=bbox)
        msg.objects.append(tracked)
    return msg


def _array_to_image(array: np.ndarray, encoding: str, header) -> Image:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    msg = Image()
    msg.header = header
    msg.height, msg.width = array.shape[:2]
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = array.shape[1] * (array.shape[2] if array.ndim == 3 else 1)
    msg.data = array.tobytes()
    return msg

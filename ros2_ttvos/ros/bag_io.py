"""Bags on disk: DAVIS sequences written as ROS 2 bags, a bag's frames and ground truth read
back, the node's outputs recorded (rosbags; no ROS install needed to read or write them)."""

import importlib
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ros2_ttvos.ros.harness import SECOND, stamp_ns

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


class BagError(RuntimeError):
    """A bag that cannot be used as asked (missing topic, wrong type, truncated file)."""


def _typestore():
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    msg_dir = _interfaces_msg_dir()
    for name in ("TrackedObject", "TrackedObjects"):
        store.register(get_types_from_msg((msg_dir / f"{name}.msg").read_text(), f"ttvos_interfaces/msg/{name}"))
    return store


def _interfaces_msg_dir() -> Path:
    """The .msg files of ttvos_interfaces: installed beside this interpreter, in the checkout, or in ament."""
    from ros2_ttvos.ros.harness import PACKAGE_ROOT

    for candidate in (
        Path(sys.prefix) / "share" / "ttvos_interfaces" / "msg",
        PACKAGE_ROOT / "ttvos_interfaces" / "msg",
    ):
        if (candidate / "TrackedObjects.msg").is_file():
            return candidate
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("ttvos_interfaces")) / "msg"


def write_davis_bag(
    davis_root: Path, sequences: List[str], out: Path, rate: float = 30.0, storage: str = "mcap",
    compressed: bool = False, year: int = 2016, split: str = "val", resolution: str = "480p",
) -> Dict[str, int]:  # fmt: skip
    """One bag with ``sequences`` one after another (1 s apart); returns message counts per topic."""
    import cv2
    from rosbags.rosbag2 import StoragePlugin, Writer

    from ros2_ttvos.data.davis import Davis

    store = _typestore()
    types = store.types
    davis = Davis(davis_root, year, split, resolution, sequences)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    if out.exists():
        raise BagError(f"{out} exists; choose a new output path")
    counts = {"image": 0, "camera_info": 0, "ground_truth/masks": 0}
    with Writer(out, version=9, storage_plugin=plugin) as writer:
        image_type = IMAGE_TYPES[1] if compressed else IMAGE_TYPES[0]
        connections = {
            "image": writer.add_connection("image", image_type, typestore=store),
            "camera_info": writer.add_connection("camera_info", "sensor_msgs/msg/CameraInfo", typestore=store),
            "ground_truth/masks": writer.add_connection("ground_truth/masks", "sensor_msgs/msg/Image", typestore=store),
        }
        stamp = SECOND
        for sequence in davis:
            for index in range(len(sequence)):
                rgb = sequence.image(index)
                h, w = rgb.shape[:2]
                sec, nanosec = divmod(stamp, SECOND)
                header = types["std_msgs/msg/Header"](
                    stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id="camera"
                )
                if compressed:
                    data = np.frombuffer(cv2.imencode(".jpg", rgb[:, :, ::-1])[1].tobytes(), np.uint8)
                    image = types["sensor_msgs/msg/CompressedImage"](header=header, format="jpeg", data=data)
                else:
                    image = types["sensor_msgs/msg/Image"](
                        header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
                        data=np.ascontiguousarray(rgb).reshape(-1),
                    )  # fmt: skip
                info = types["sensor_msgs/msg/CameraInfo"](
                    header=header, height=h, width=w, distortion_model="", d=np.zeros(0),
                    k=np.zeros(9), r=np.eye(3).reshape(-1), p=np.zeros(12), binning_x=0, binning_y=0,
                    roi=types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                                  do_rectify=False),
                )  # fmt: skip
                messages = {"image": (image, image_type), "camera_info": (info, "sensor_msgs/msg/CameraInfo")}
                mask = sequence.mask(index)
                if mask is not None:
                    messages["ground_truth/masks"] = (
                        types["sensor_msgs/msg/Image"](
                            header=header, height=h, width=w, encoding="mono8", is_bigendian=0, step=w,
                            data=np.ascontiguousarray(mask).reshape(-1),
                        ),
                        "sensor_msgs/msg/Image",
                    )  # fmt: skip
                for topic, (msg, msgtype) in messages.items():
                    writer.write(connections[topic], stamp, store.serialize_cdr(msg, msgtype))
                    counts[topic] += 1
                stamp += round(SECOND / rate)
            stamp += SECOND
    return counts


# --- eval ---------------------------------------------------------------------------------------
@dataclass
class BagFrames:
    """The image messages of a bag (serialized) and its ground-truth labels by stamp."""

    msgtype: str
    images: List[tuple] = field(default_factory=list)  # (bag time ns, stamp ns, raw bytes)
    truth: Dict[int, np.ndarray] = field(default_factory=dict)


def read_bag(path: Path, image_topic: str, gt_topic: Optional[str]) -> BagFrames:
    """Read image messages and ground-truth masks; BagError for anything that makes the bag unusable."""
    from rosbags.rosbag2 import Reader

    from ros2_ttvos.ros import conversions

    try:
        reader = Reader(path)
        reader.open()
    except Exception as error:  # rosbags raises several types for damaged bags
        raise BagError(f"cannot open bag {path}: {error}") from error
    try:
        topics = {c.topic: c.msgtype for c in reader.connections}
        topic = image_topic.lstrip("/")
        found = [t for t in topics if t.lstrip("/") == topic]
        if not found:
            raise BagError(f"no topic {image_topic!r} in {path}; topics: {sorted(topics)}")
        if topics[found[0]] not in IMAGE_TYPES:
            raise BagError(f"{image_topic} is {topics[found[0]]}, not sensor_msgs/Image or CompressedImage")
        frames = BagFrames(topics[found[0]])
        gt = [t for t in topics if gt_topic and t.lstrip("/") == gt_topic.lstrip("/")]
        if gt and topics[gt[0]] != "sensor_msgs/msg/Image":
            raise BagError(f"{gt_topic} is {topics[gt[0]]}, not a mono8 sensor_msgs/Image")
        wanted = [c for c in reader.connections if c.topic in found + gt]
        store = _typestore()
        from rclpy.serialization import deserialize_message

        for connection, bag_time, raw in reader.messages(connections=wanted):
            if connection.topic in found:
                header = store.deserialize_cdr(raw, frames.msgtype).header
                frames.images.append((bag_time, stamp_ns(header), bytes(raw)))
            else:
                mask_msg = deserialize_message(bytes(raw), message_class("sensor_msgs/msg/Image"))
                frames.truth[stamp_ns(mask_msg.header)] = conversions.image_to_labels(mask_msg)
    except BagError:
        raise
    except Exception as error:
        raise BagError(f"cannot read bag {path} (truncated or corrupt?): {error}") from error
    finally:
        reader.close()
    if not frames.images:
        raise BagError(f"{image_topic} has no messages in {path}")
    return frames


def message_class(msgtype: str):
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def write_outputs_bag(client, path: Path) -> None:
    """The node's masks and objects messages, as received, in an MCAP bag."""
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = _typestore()
    shutil.rmtree(path, ignore_errors=True)  # the previous run's recording in the same output folder
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        masks = writer.add_connection("masks", "sensor_msgs/msg/Image", typestore=store)
        objects = writer.add_connection("objects", "ttvos_interfaces/msg/TrackedObjects", typestore=store)
        for connection, messages in ((masks, client.masks), (objects, client.objects)):
            for msg in list(messages):
                writer.write(connection, stamp_ns(msg.header), serialize_message(msg))

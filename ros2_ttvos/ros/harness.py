"""Running the node as a real process and talking to it over DDS: used by the demo, the tests
and the ROS benchmark. Nothing here is mocked: a real node, real DDS, real messages."""

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import rclpy
from geometry_msgs.msg import Point
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from ros2_ttvos.ros import conversions
from ttvos_interfaces.msg import TrackedObjects
from ttvos_interfaces.srv import RemoveObjects, SetTargets

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
SECOND = 1_000_000_000  # nanoseconds


def stamp_ns(header) -> int:
    """A message header's stamp in nanoseconds (the key that matches outputs to frames)."""
    return header.stamp.sec * SECOND + header.stamp.nanosec


def config_file(name: str) -> Path:
    """A file of the package's config/ folder (source checkout or installed share directory)."""
    candidate = PACKAGE_ROOT / "config" / name
    if candidate.is_file():
        return candidate
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("ros2_ttvos")) / "config" / name


def ros_environment(domain_id: Optional[int] = None) -> Dict[str, str]:
    """Environment for an isolated ROS 2 graph on this host with large-message Fast DDS settings;
    unbuffered output and Python's fault handler, so that a node's log tells how it ended."""
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain_id if domain_id is not None else random.randint(20, 200)),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        RMW_IMPLEMENTATION="rmw_fastrtps_cpp",
        FASTDDS_DEFAULT_PROFILES_FILE=str(config_file("fastdds.xml")),
        PYTHONUNBUFFERED="1",
        PYTHONFAULTHANDLER="1",  # a crash of a node writes its Python stack to the node's log
    )
    return env


ROS_VARIABLES = (
    "ROS_DOMAIN_ID",
    "ROS_AUTOMATIC_DISCOVERY_RANGE",
    "RMW_IMPLEMENTATION",
    "FASTDDS_DEFAULT_PROFILES_FILE",
)


def use_environment(env: Dict[str, str]) -> None:
    """Apply ``env``'s ROS variables to this process (before rclpy.init)."""
    for key in (
        "ROS_DOMAIN_ID",
        "ROS_AUTOMATIC_DISCOVERY_RANGE",
        "RMW_IMPLEMENTATION",
        "FASTDDS_DEFAULT_PROFILES_FILE",
    ):
        os.environ[key] = env[key]


class NodeProcess:
    """``ttvos_node`` as a subprocess; stopped with SIGINT, then killed after a timeout."""

    def __init__(
        self,
        env: Dict[str, str],
        parameters: Dict[str, object],
        log_path: Path,
        name: str = "ttvos",
        namespace: str = "",
    ):
        args = [sys.executable, "-m", "ros2_ttvos.ros.node", "--ros-args", "-r", f"__node:={name}"]
        if namespace:
            args += ["-r", f"__ns:=/{namespace}"]
        for key, value in parameters.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            args += ["-p", f"{key}:={text}"]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 (open for the life of the process)
        self.process = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


class Client:
    """A client node: publishes frames to the node, calls its services, collects its outputs."""

    def __init__(self, node_name: str = "ttvos", namespace: str = "", compressed: bool = False):
        self.node = Node("ttvos_test_client", namespace=namespace)
        self.target = node_name
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        if compressed:
            from sensor_msgs.msg import CompressedImage

            self.image_pub = self.node.create_publisher(CompressedImage, "image/compressed", reliable)
        else:
            self.image_pub = self.node.create_publisher(Image, "image", reliable)
        self.masks: List[Image] = []
        self.objects: List[TrackedObjects] = []
        self.received_at: List[float] = []
        self.node.create_subscription(Image, "masks", self._on_mask, reliable)
        self.node.create_subscription(TrackedObjects, "objects", self.objects.append, reliable)
        self.set_targets = self.node.create_client(SetTargets, f"{node_name}/set_targets")
        self.remove = self.node.create_client(RemoveObjects, f"{node_name}/remove_objects")
        from std_srvs.srv import Trigger

        self.reset = self.node.create_client(Trigger, f"{node_name}/reset")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._spinning = True
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self._spinning and rclpy.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def _on_mask(self, msg: Image) -> None:
        self.received_at.append(time.monotonic())
        self.masks.append(msg)

    def wait_for_node(self, process: Optional[NodeProcess] = None, timeout: float = 120.0) -> None:
        """Wait until the node's services answer and it subscribes to the image topic."""
        self.wait_until(
            lambda: self.set_targets.service_is_ready() and self.image_pub.get_subscription_count() > 0,
            "the node's set_targets service and image subscription",
            process,
            timeout,
        )

    def call(self, client, request, timeout: float = 60.0):
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer from {client.srv_name} within {timeout} s")
            time.sleep(0.01)
        return future.result()

    def publish(self, rgb: np.ndarray, stamp_ns: int, frame_id: str = "camera") -> Image:
        msg = conversions.rgb_to_image(rgb, self.header(stamp_ns, frame_id))
        self.image_pub.publish(msg)
        return msg

    @staticmethod
    def header(stamp_ns: int, frame_id: str = "camera"):
        from std_msgs.msg import Header

        header = Header(frame_id=frame_id)
        header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, SECOND)
        return header

    def targets_request(
        self, labels: Optional[np.ndarray], stamp_ns: int, replace: bool = False, image=None, boxes=None, clicks=None
    ):
        """A set_targets request: a label mask (or None), the frame, boxes {id: (x0, y0, x1, y1)},
        clicks {id: [(x, y, positive), ...]}."""
        request = SetTargets.Request(replace=replace)
        if labels is not None:
            request.mask = conversions.labels_to_image(labels, self.header(stamp_ns))
        if image is not None:
            request.image = conversions.rgb_to_image(image, self.header(stamp_ns))
        for object_id, box in (boxes or {}).items():
            request.boxes.append(conversions.box_to_roi(box))
            request.box_ids.append(object_id)
        for object_id, points in (clicks or {}).items():
            for x, y, positive in points:
                request.clicks.append(Point(x=float(x), y=float(y)))
                request.click_ids.append(object_id)
                request.click_positive.append(bool(positive))
        return request

    def wait_for_masks(self, count: int, timeout: float = 120.0) -> None:
        self.wait_until(lambda: len(self.masks) >= count, f"{count} masks (got {len(self.masks)})", timeout=timeout)

    @staticmethod
    def wait_until(condition, what: str, process: Optional[NodeProcess] = None, timeout: float = 60.0) -> None:
        """Poll ``condition`` until true; TimeoutError after ``timeout``, RuntimeError if the node died."""
        deadline = time.monotonic() + timeout
        while not condition():
            if process is not None and not process.alive():
                raise RuntimeError(f"the node exited with {process.process.returncode}:\n{process.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout} s for {what}")
            time.sleep(0.01)

    def close(self) -> None:
        self._spinning = False
        self._thread.join(timeout=2)
        self.executor.remove_node(self.node)
        self.node.destroy_node()

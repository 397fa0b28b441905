"""``ttvos_node``: the TTVOS tracker as a ROS 2 lifecycle node (a thin layer over ``Tracker``).

Topics (relative, so namespaces and remapping work):
  sub  image               sensor_msgs/Image (image/compressed with image_transport=compressed)
  pub  masks               sensor_msgs/Image mono8 label image, header copied from the input
  pub  objects             ttvos_interfaces/TrackedObjects, same header
  pub  debug/overlay       sensor_msgs/Image rgb8, only computed while someone subscribes
  pub  /diagnostics        diagnostic_msgs/DiagnosticArray at 1 Hz
Services: ~/set_targets, ~/remove_objects, ~/reset (std_srvs/Trigger).

Lifecycle: configure loads the model (a bad weights path or device fails the transition with
the reason), activate starts processing, deactivate stops it, cleanup frees the model.
"""

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Tuple

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger

from ros2_ttvos.checkpoint import CheckpointError
from ros2_ttvos.ros import conversions
from ros2_ttvos.ros.diagnostics import RollingStats, tracking_status
from ros2_ttvos.ros.frame_queue import FrameQueue
from ros2_ttvos.ros.parameters import CHOICES, PARAMETERS, RUNTIME_PARAMETERS, NodeConfig
from ros2_ttvos.ros.process_end import end_process
from ros2_ttvos.ros.targets import parse_request, target_labels
from ros2_ttvos.tracker import Tracker
from ttvos_interfaces.msg import TrackedObjects
from ttvos_interfaces.srv import RemoveObjects, SetTargets


@dataclass
class Frame:
    rgb: np.ndarray
    header: object
    received: float  # time.monotonic() at arrival


class TTVOSNode(LifecycleNode):
    """Tracks the objects given by ``set_targets`` through the image stream."""

    def __init__(self, node_name: str = "ttvos", **kwargs):
        super().__init__(node_name, **kwargs)
        self.config: Optional[NodeConfig] = None
        self.add_on_set_parameters_callback(self._validate_parameters)
        for name, (default, descriptor) in PARAMETERS.items():
            self.declare_parameter(name, default, descriptor)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.tracker: Optional[Tracker] = None
        self._tracker_lock = threading.Lock()
        self._queue: Optional[FrameQueue] = None
        self._recent: Deque[Frame] = deque(maxlen=1)
        self._worker: Optional[threading.Thread] = None
        self._state_label = "unconfigured"
        self._image_sub = None
        self._service_handles: List = []
        self._outputs: Dict[str, object] = {}
        self._inference = RollingStats()
        self._latency = RollingStats()
        self._inputs = RollingStats()
        self._bad_frames = 0
        self._last_error = ""
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diagnostics_timer = self.create_timer(1.0, self._publish_diagnostics)

    # --- parameters ---------------------------------------------------------------------------
    def _read_config(self) -> NodeConfig:
        values = {name: self.get_parameter(name).value for name in PARAMETERS}
        return NodeConfig(**values)

    def _validate_parameters(self, parameters) -> SetParametersResult:
        for parameter in parameters:
            choices = CHOICES.get(parameter.name)
            if choices and parameter.value not in choices:
                return SetParametersResult(successful=False, reason=f"{parameter.name} must be one of {choices}")
            if (
                self.config is not None
                and parameter.name in PARAMETERS
                and parameter.name not in RUNTIME_PARAMETERS
                and parameter.value != getattr(self.config, parameter.name)
            ):
                return SetParametersResult(
                    successful=False,
                    reason=f"{parameter.name} is applied on configure: deactivate, clean up and configure again",
                )
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters) -> None:
        if self.config is None:
            return
        changes = {p.name: p.value for p in parameters if p.name in RUNTIME_PARAMETERS}
        if changes:
            self.config = NodeConfig(**{**self.config.__dict__, **changes})
            with self._tracker_lock:
                if self.tracker is not None:
                    self.tracker.confidence_threshold = self.config.confidence_threshold
                    self.tracker.hold_when_lost = self.config.hold_when_lost
                    self.tracker.search_region = self.config.search_region
                    self.tracker.region_state = self.config.region_state

    # --- lifecycle ----------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        config = self._read_config()
        try:
            tracker = Tracker.from_pretrained(
                config.weights or None,
                device=config.device,
                backend=config.backend,
                threads=config.threads or None,
                precision=config.precision,
                internal_size=config.internal_size,
                confidence_threshold=config.confidence_threshold,
                hold_when_lost=config.hold_when_lost,
                search_region=config.search_region,
                region_state=config.region_state,
            )
        except (CheckpointError, ValueError, OSError, RuntimeError) as error:
            self._last_error = f"configure failed: {error}"
            self.get_logger().error(self._last_error)
            return TransitionCallbackReturn.FAILURE
        self.config, self.tracker = config, tracker
        self._recent = deque(maxlen=config.frame_buffer)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        overrides = QoSOverridingOptions.with_default_policies()
        for name, msg_type in (("masks", Image), ("objects", TrackedObjects), ("debug/overlay", Image)):
            self._outputs[name] = self.create_lifecycle_publisher(
                msg_type, name, reliable, qos_overriding_options=overrides
            )
        self._service_handles = [
            self.create_service(SetTargets, "~/set_targets", self._on_set_targets),
            self.create_service(RemoveObjects, "~/remove_objects", self._on_remove_objects),
            self.create_service(Trigger, "~/reset", self._on_reset),
        ]
        self._state_label = "inactive"
        self.get_logger().info(
            f"configured: {tracker.backend.name} on {tracker.device}, internal size {config.internal_size}, "
            f"weights {config.weights or 'shipped'}, "
            f"{'every frame' if config.process_every_frame else 'latest frame'} mode"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        config = self.config
        self._queue = FrameQueue(config.queue_size if config.process_every_frame else 1)
        if config.process_every_frame:
            qos = QoSProfile(depth=config.queue_size, reliability=ReliabilityPolicy.RELIABLE)
        else:
            qos = qos_profile_sensor_data
        compressed = config.image_transport == "compressed"
        self._image_sub = self.create_subscription(
            CompressedImage if compressed else Image,
            "image/compressed" if compressed else "image",
            self._on_image,
            qos,
            qos_overriding_options=QoSOverridingOptions.with_default_policies(),
        )
        self._worker = threading.Thread(target=self._work, name="ttvos-worker", daemon=True)
        self._worker.start()
        self._state_label = "active"
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        if self._image_sub is not None:
            self.destroy_subscription(self._image_sub)
            self._image_sub = None
        self._state_label = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self._release()
        self._state_label = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def _stop_worker(self) -> None:
        if self._queue is not None:
            self._queue.close()
        if self._worker is not None:
            self._worker.join(timeout=10)
            self._worker = None

    def _release(self) -> None:
        for service in self._service_handles:
            self.destroy_service(service)
        self._service_handles = []
        for publisher in self._outputs.values():
            self.destroy_lifecycle_publisher(publisher)
        self._outputs = {}
        with self._tracker_lock:
            if self.tracker is not None:
                self.tracker.close()
            self.tracker = None
        self.config = None

    # --- frames -------------------------------------------------------------------------------
    def _on_image(self, msg) -> None:
        self._inputs.add()
        try:
            rgb = (
                conversions.compressed_to_rgb(msg)
                if isinstance(msg, CompressedImage)
                else conversions.image_to_rgb(msg)
            )
        except conversions.ConversionError as error:
            self._bad_frames += 1
            self._last_error = str(error)
            self.get_logger().error(f"frame dropped: {error}", throttle_duration_sec=5.0)
            return
        frame = Frame(rgb, msg.header, time.monotonic())
        self._recent.append(frame)
        if self._queue.put(frame) and self.config.process_every_frame:
            self.get_logger().warn(
                f"falling behind: queue of {self.config.queue_size} frames full, oldest dropped",
                throttle_duration_sec=2.0,
            )

    def _work(self) -> None:
        while True:
            frame = self._queue.get()
            if frame is None:
                return
            try:
                self._process(frame)
            except Exception as error:  # the worker must outlive any one frame (e.g. out of GPU memory)
                self._bad_frames += 1
                self._last_error = f"frame failed: {type(error).__name__}: {error}"
                self.get_logger().error(self._last_error, throttle_duration_sec=5.0)

    def _process(self, frame: Frame) -> None:
        start = time.monotonic()
        with self._tracker_lock:
            if self.tracker is None:
                return
            try:
                result = self.tracker.step(frame.rgb)
            except ValueError as error:  # the stream changed size: start over
                self.tracker.reset()
                self._last_error = f"{error}; tracking reset"
                self.get_logger().error(self._last_error)
                result = self.tracker.step(frame.rgb)
            threshold = self.config.confidence_threshold
        self._inference.add(1000 * (time.monotonic() - start))
        self._outputs["masks"].publish(conversions.labels_to_image(result.labels, frame.header))
        objects = conversions.tracked_objects(result.labels, result.confidences, frame.header, threshold)
        self._outputs["objects"].publish(objects)
        overlay_pub = self._outputs["debug/overlay"]
        if self.config.publish_overlay and overlay_pub.get_subscription_count() > 0:
            from ros2_ttvos.visualize import overlay

            overlay_pub.publish(
                conversions.rgb_to_image(overlay(frame.rgb, result.labels, result.confidences), frame.header)
            )
        self._latency.add(1000 * (time.monotonic() - frame.received))

    # --- services -----------------------------------------------------------------------------
    def _frame_for(self, request) -> Tuple[Optional[np.ndarray], str]:
        if request.image.data:
            return conversions.image_to_rgb(request.image), "request image"
        stamp = request.mask.header.stamp
        for frame in reversed(self._recent if request.mask.data else []):
            if frame.header.stamp == stamp:
                return frame.rgb, "buffered frame with the mask's stamp"
        if self._recent:
            return self._recent[-1].rgb, "latest frame"
        return None, ""

    def _on_set_targets(self, request, response):
        response.success = False
        if self._state_label != "active":
            response.message = f"node is {self._state_label}, not active"
            return response
        try:
            image, source = self._frame_for(request)
            targets = parse_request(request, image)
        except (conversions.ConversionError, ValueError) as error:
            response.message = str(error)
            return response
        ids = targets.ids
        too_high = [i for i in ids if i > self.config.max_objects]
        if too_high:
            response.message = f"object ids {too_high} exceed max_objects={self.config.max_objects}"
            return response
        with self._tracker_lock:
            kept = [] if request.replace else [i for i in self.tracker.object_ids if i not in ids]
            if len(kept) + len(ids) > self.config.max_objects:
                response.message = f"{len(kept) + len(ids)} objects would exceed max_objects={self.config.max_objects}"
                return response
            try:
                labels = target_labels(self.tracker, image, targets, self.config.box_method)
                if request.replace:
                    self.tracker.reset()
                added = self.tracker.add_objects(image, labels)
            except ValueError as error:
                response.message = str(error)
                return response
        response.success, response.object_ids = True, added
        response.message = f"tracking objects {added} from the {source}"
        self.get_logger().info(response.message)
        return response

    def _on_remove_objects(self, request, response):
        if self.tracker is None:
            response.success, response.message = False, f"node is {self._state_label}: no tracker"
            return response
        try:
            with self._tracker_lock:
                self.tracker.remove_objects(list(request.object_ids))
        except ValueError as error:
            response.success, response.message = False, str(error)
            return response
        response.success, response.message = True, f"removed {list(request.object_ids)}"
        return response

    def _on_reset(self, request, response):
        if self.tracker is None:
            response.success, response.message = False, f"node is {self._state_label}: no tracker"
            return response
        with self._tracker_lock:
            self.tracker.reset()
        response.success, response.message = True, "all objects dropped"
        return response

    # --- diagnostics --------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        dropped = self._queue.dropped if self._queue else 0
        tracker = self.tracker
        values = {
            "lifecycle_state": self._state_label,
            "device": str(tracker.device) if tracker else "none",
            "objects": len(tracker.object_ids) if tracker else 0,
            "inference_ms_p50": round(self._inference.percentile(50), 2),
            "inference_ms_p95": round(self._inference.percentile(95), 2),
            "latency_ms_p50": round(self._latency.percentile(50), 2),
            "latency_ms_p95": round(self._latency.percentile(95), 2),
            "input_hz": round(self._inputs.rate(), 2),
            "output_hz": round(self._latency.rate(), 2),
            "dropped_frames": dropped,
            "bad_frames": self._bad_frames,
            "last_error": self._last_error,
        }
        status = tracking_status(f"{self.get_fully_qualified_name()}: tracking", values, self._state_label)
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(msg)


def main(args=None) -> None:
    rclpy.init(args=args)
    node = TTVOSNode()
    # One executor thread for every callback (image intake, services, timers) and the worker
    # thread for inference. A MultiThreadedExecutor's Python spin loop took as much CPU as the
    # inference on 2 cores, and dropped most frames of a 30 Hz stream (docs/node-profile.md).
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if node.get_parameter("autostart").value:
            node.trigger_configure()
            if node._state_label == "inactive":
                node.trigger_activate()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node._stop_worker()
        node.destroy_node()
        rclpy.try_shutdown()
    end_process(0)


if __name__ == "__main__":
    main()

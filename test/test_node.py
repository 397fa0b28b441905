"""The real ttvos_node as a subprocess on a real DDS graph (unique domain, localhost only)."""

import os
import time

import numpy as np
import pytest
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from ros2_ttvos import checkpoint
from ros2_ttvos.prompt_crops import mask_box
from ros2_ttvos.ros import conversions, harness
from ros2_ttvos.tracker import Tracker
from ttvos_interfaces.srv import RemoveObjects

INTERNAL_SIZE = 160
SECOND = 1_000_000_000
ENV = harness.ros_environment(domain_id=100 + os.getpid() % 100)


@pytest.fixture(scope="module")
def ros_client():
    harness.use_environment(ENV)
    rclpy.init()
    client = harness.Client()
    yield client
    client.close()
    rclpy.shutdown()


@pytest.fixture(scope="module")
def weights(network, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "ttvos.pt"
    checkpoint.save_atomic(checkpoint.model_payload(network), path)
    return path


def start_node(tmp_path, weights, name="ttvos", namespace="", **parameters):
    defaults = {
        "weights": str(weights),
        "internal_size": INTERNAL_SIZE,
        "threads": 1,
        "process_every_frame": True,
        "max_objects": 4,
        "backend": "torch",
    }
    return harness.NodeProcess(ENV, {**defaults, **parameters}, tmp_path / f"{name}.log", name, namespace)


@pytest.fixture(scope="module")
def node(weights, tmp_path_factory, ros_client):
    process = start_node(tmp_path_factory.mktemp("node"), weights)
    ros_client.wait_for_node(process)
    yield process
    assert process.stop() == 0, process.log()


def reset_outputs(client):
    client.masks.clear()
    client.objects.clear()


def test_set_targets_before_any_frame_is_refused(node, ros_client, clip):
    response = ros_client.call(ros_client.set_targets, ros_client.targets_request(clip[1][0], SECOND))
    assert not response.success and "no frame received yet" in response.message


def test_every_frame_equals_the_offline_tracker(node, ros_client, clip, network):
    frames, masks = clip
    reset_outputs(ros_client)
    ros_client.publish(frames[0], SECOND, frame_id="cam_front")
    ros_client.wait_for_masks(1)
    assert not conversions.image_to_labels(ros_client.masks[0]).any()  # nothing tracked yet
    response = ros_client.call(ros_client.set_targets, ros_client.targets_request(masks[0], SECOND, replace=True))
    assert response.success and list(response.object_ids) == [1], response.message
    assert "stamp" in response.message  # found the buffered frame by its stamp
    stamps = [SECOND + i * 33_000_000 for i in range(1, len(frames))]
    for frame, stamp in zip(frames[1:], stamps, strict=True):
        ros_client.publish(frame, stamp, frame_id="cam_front")
        time.sleep(0.02)
    ros_client.wait_for_masks(len(frames))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    offline = Tracker.from_model(network, device="cpu", internal_size=INTERNAL_SIZE)
    offline.add_objects(frames[0], masks[0])
    expected = [offline.step(frame) for frame in frames[1:]]
    torch.set_num_threads(threads)

    received = ros_client.masks[1:]
    assert [m.header.stamp.sec * SECOND + m.header.stamp.nanosec for m in received] == stamps
    assert all(m.header.frame_id == "cam_front" for m in received)
    for msg, result in zip(received, expected, strict=True):
        labels = conversions.image_to_labels(msg)
        assert msg.encoding == "mono8" and labels.shape == frames[0].shape[:2]
        np.testing.assert_array_equal(labels, result.labels)
    objects = ros_client.objects[-1]
    assert objects.header.stamp == received[-1].header.stamp
    assert [o.id for o in objects.objects] == [1]
    assert objects.objects[0].confidence == pytest.approx(expected[-1].confidences[1], abs=1e-5)
    assert objects.objects[0].area == int((expected[-1].labels == 1).sum())
    ys, xs = np.nonzero(expected[-1].labels == 1)
    box = objects.objects[0].bbox
    assert (box.x_offset, box.y_offset, box.width, box.height) == (
        xs.min(),
        ys.min(),
        xs.max() - xs.min() + 1,
        ys.max() - ys.min() + 1,
    )


def test_onnxruntime_backend_node_every_frame(tmp_path, export_dir, ros_client, clip, network):
    frames, masks = clip
    process = start_node(tmp_path, export_dir, name="ttvos_onnx", namespace="onnx", backend="onnxruntime")
    client = harness.Client(node_name="ttvos_onnx", namespace="onnx")
    try:
        client.wait_for_node(process)
        reset_outputs(ros_client)
        request = client.targets_request(masks[0], SECOND, replace=True, image=frames[0])
        response = client.call(client.set_targets, request)
        assert response.success, response.message
        for index, frame in enumerate(frames[1:6], start=1):
            client.publish(frame, SECOND + index * 33_000_000)
            time.sleep(0.02)
        client.wait_for_masks(5)
        offline = Tracker.from_model(network, device="cpu", internal_size=INTERNAL_SIZE)
        offline.add_objects(frames[0], masks[0])
        expected = [offline.step(frame).labels for frame in frames[1:6]]
        received = [conversions.image_to_labels(m) for m in client.masks[:5]]
        assert np.mean(np.stack(received) == np.stack(expected)) >= 0.999
        assert "onnxruntime on cpu" in process.log()
    finally:
        client.close()
        assert process.stop() == 0, process.log()


@pytest.mark.parametrize(
    ("make_mask", "message"),
    [
        (lambda m: m[:100], "differs from image size"),
        (lambda m: np.where(m > 0, 9, 0).astype(np.uint8), "exceed max_objects"),
        (lambda m: np.zeros_like(m), "no object pixels"),
    ],
)
def test_bad_targets_get_clear_answers(node, ros_client, clip, make_mask, message):
    frames, masks = clip
    response = ros_client.call(
        ros_client.set_targets, ros_client.targets_request(make_mask(masks[0]), SECOND, image=frames[0])
    )
    assert not response.success and message in response.message


def test_bad_encoding_and_unknown_ids_and_reset(node, ros_client, clip):
    frames, masks = clip
    request = ros_client.targets_request(masks[0], SECOND)
    request.mask = conversions.rgb_to_image(frames[0], request.mask.header)
    response = ros_client.call(ros_client.set_targets, request)
    assert not response.success and "mono8" in response.message
    response = ros_client.call(ros_client.remove, RemoveObjects.Request(object_ids=[42]))
    assert not response.success and "unknown object ids [42]" in response.message
    assert ros_client.call(ros_client.reset, Trigger.Request()).success


def test_bad_frames_are_dropped_and_size_changes_reset_tracking(node, ros_client, clip):
    frames, masks = clip
    response = ros_client.call(
        ros_client.set_targets, ros_client.targets_request(masks[0], 5 * SECOND, replace=True, image=frames[0])
    )
    assert response.success, response.message
    reset_outputs(ros_client)
    bad = conversions.rgb_to_image(frames[1], ros_client.header(6 * SECOND))
    bad.encoding = "rgb16"
    ros_client.image_pub.publish(bad)
    ros_client.publish(frames[2][:240, :320].copy(), 7 * SECOND)  # another size
    ros_client.wait_for_masks(1)
    assert ros_client.masks[0].header.stamp.sec == 7 and ros_client.masks[0].height == 240
    ros_client.wait_until(lambda: ros_client.objects, "objects message")
    assert ros_client.objects[-1].objects == []  # tracking was reset
    log = node.log()
    assert "unsupported image encoding 'rgb16'" in log and "tracking reset" in log
    ros_client.publish(frames[3], 8 * SECOND)  # still serving
    ros_client.wait_for_masks(2)


def call_lifecycle(client, transition_id):
    change = client.node.create_client(ChangeState, "ttvos/change_state")
    assert change.wait_for_service(10)
    return client.call(change, ChangeState.Request(transition=Transition(id=transition_id))).success


def lifecycle_state(client) -> str:
    get = client.node.create_client(GetState, "ttvos/get_state")
    assert get.wait_for_service(10)
    return client.call(get, GetState.Request()).current_state.label


def test_lifecycle_transitions(node, ros_client, clip):
    frames, masks = clip
    assert lifecycle_state(ros_client) == "active"
    assert call_lifecycle(ros_client, Transition.TRANSITION_DEACTIVATE)
    assert lifecycle_state(ros_client) == "inactive"
    response = ros_client.call(ros_client.set_targets, ros_client.targets_request(masks[0], SECOND, image=frames[0]))
    assert not response.success and "not active" in response.message
    reset_outputs(ros_client)
    ros_client.publish(frames[1], 9 * SECOND)
    time.sleep(1.0)
    assert ros_client.masks == []  # inactive: nothing processed
    assert call_lifecycle(ros_client, Transition.TRANSITION_ACTIVATE)
    ros_client.wait_for_node(node)
    ros_client.publish(frames[2], 10 * SECOND)
    ros_client.wait_for_masks(1)


def test_runtime_parameters(node, ros_client):
    set_params = ros_client.node.create_client(SetParameters, "ttvos/set_parameters")
    assert set_params.wait_for_service(10)

    def set_param(name, value):
        kind, field = {
            float: (ParameterType.PARAMETER_DOUBLE, "double_value"),
            int: (ParameterType.PARAMETER_INTEGER, "integer_value"),
            str: (ParameterType.PARAMETER_STRING, "string_value"),
            bool: (ParameterType.PARAMETER_BOOL, "bool_value"),
        }[type(value)]
        parameter = Parameter(name=name, value=ParameterValue(type=kind, **{field: value}))
        return ros_client.call(set_params, SetParameters.Request(parameters=[parameter])).results[0]

    assert set_param("confidence_threshold", 0.7).successful
    result = set_param("internal_size", 320)
    assert not result.successful and "applied on configure" in result.reason
    assert not set_param("confidence_threshold", 1.5).successful  # outside its range
    assert set_param("hold_when_lost", "template").successful
    result = set_param("hold_when_lost", "forever")
    assert not result.successful and "must be one of" in result.reason
    assert set_param("search_region", False).successful  # looked for everywhere
    assert set_param("search_region", True).successful
    assert set_param("region_state", True).successful  # state from the foreground in the region
    assert set_param("region_state", False).successful  # from the whole foreground (the default)


def test_diagnostics(node, ros_client):
    received = []
    subscription = ros_client.node.create_subscription(DiagnosticArray, "/diagnostics", received.append, 10)
    deadline = time.monotonic() + 10
    while not received and time.monotonic() < deadline:
        time.sleep(0.1)
    ros_client.node.destroy_subscription(subscription)
    assert received, "no diagnostics within 10 s"
    values = {kv.key: kv.value for kv in received[-1].status[0].values}
    for key in ("inference_ms_p50", "inference_ms_p95", "latency_ms_p50", "input_hz", "output_hz", "dropped_frames"):
        assert key in values
    assert values["lifecycle_state"] == "active" and values["device"] == "cpu"
    assert float(values["inference_ms_p50"]) > 0


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        line = next(line for line in handle if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def test_thousand_frames_without_memory_growth(node, ros_client, clip):
    frames, masks = clip
    small = [np.ascontiguousarray(f[::4, ::4]) for f in frames]
    response = ros_client.call(
        ros_client.set_targets,
        ros_client.targets_request(np.ascontiguousarray(masks[0][::4, ::4]), SECOND, replace=True, image=small[0]),
    )
    assert response.success, response.message
    reset_outputs(ros_client)
    rss = {}
    for index in range(1, 1001):
        ros_client.publish(small[index % len(small)], 20 * SECOND + index * 1_000_000)
        if index % 20 == 0:
            ros_client.wait_for_masks(index - 10)
        if index in (100, 1000):
            ros_client.wait_for_masks(index)
            rss[index] = rss_mb(node.process.pid)
    assert len(ros_client.masks) == 1000
    assert rss[1000] - rss[100] < 20, rss


def test_bad_weights_fail_configure_and_the_node_keeps_running(tmp_path, weights, ros_client):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(weights.read_bytes()[:5000])
    process = start_node(tmp_path, broken, name="ttvos_broken", autostart=True)
    try:
        ros_client.wait_until(lambda: "configure failed" in process.log(), "configure failure", process)
        assert "truncated or corrupt" in process.log()
        assert process.alive()
        # Nothing is lost: the same node configures once its weights parameter names a good file.
        set_params = ros_client.node.create_client(SetParameters, "ttvos_broken/set_parameters")
        assert set_params.wait_for_service(10)
        good_file = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(weights))
        good = Parameter(name="weights", value=good_file)
        assert ros_client.call(set_params, SetParameters.Request(parameters=[good])).results[0].successful
        change = ros_client.node.create_client(ChangeState, "ttvos_broken/change_state")
        assert change.wait_for_service(10)
        configure = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CONFIGURE))
        assert ros_client.call(change, configure).success, process.log()
        assert "configured:" in process.log()
    finally:
        assert process.stop() == 0, process.log()


def test_compressed_transport(tmp_path, weights, ros_client, clip):
    import cv2
    from sensor_msgs.msg import CompressedImage

    frames, masks = clip
    process = start_node(tmp_path, weights, name="ttvos_compressed", image_transport="compressed")
    publisher = ros_client.node.create_publisher(CompressedImage, "image/compressed", 10)
    try:
        ros_client.wait_until(lambda: publisher.get_subscription_count() > 0, "image/compressed subscriber", process)
        reset_outputs(ros_client)
        msg = CompressedImage(header=ros_client.header(30 * SECOND), format="jpeg")
        msg.data = cv2.imencode(".jpg", frames[0][:, :, ::-1])[1].tobytes()
        # Sent again until a mask comes back: a message sent before both sides of the fresh
        # node's topics have discovered each other is lost (volatile DDS), whatever the node does.
        deadline = time.monotonic() + 30
        while not ros_client.masks and time.monotonic() < deadline:
            publisher.publish(msg)
            time.sleep(1.0)
        ros_client.wait_for_masks(1, timeout=5)
        assert ros_client.masks[-1].header.stamp.sec == 30
        assert isinstance(ros_client.masks[-1], Image)
    finally:
        ros_client.node.destroy_publisher(publisher)
        assert process.stop() == 0, process.log()


def test_clicks_start_tracking_over_dds_and_bad_clicks_are_refused(node, ros_client, clip):
    """A click on the car (no mask, no box) starts an object; a box with a negative click too;
    bad clicks get clear answers and change nothing."""
    frames, masks = clip
    ys, xs = np.nonzero(masks[0])
    inside = (float(np.median(xs)), float(np.median(ys)), True)
    request = ros_client.targets_request(None, SECOND, replace=True, image=frames[0], clicks={3: [inside]})
    response = ros_client.call(ros_client.set_targets, request)
    assert response.success and list(response.object_ids) == [3], response.message
    car = mask_box(masks[0] > 0)
    corner = (float(car[0]), float(car[1]), False)
    both = ros_client.targets_request(None, SECOND, replace=True, image=frames[0], boxes={4: car}, clicks={4: [corner]})
    response = ros_client.call(ros_client.set_targets, both)
    assert response.success and list(response.object_ids) == [4], response.message
    for clicks, message in [
        ({2: [(5000.0, 10.0, True)]}, "outside"),
        ({2: [corner]}, "neither a box nor a positive click"),
    ]:
        bad = ros_client.targets_request(None, SECOND, image=frames[0], clicks=clicks)
        response = ros_client.call(ros_client.set_targets, bad)
        assert not response.success and message in response.message, response.message
    mismatched = ros_client.targets_request(None, SECOND, image=frames[0], clicks={2: [inside]})
    mismatched.click_positive.append(True)
    response = ros_client.call(ros_client.set_targets, mismatched)
    assert not response.success and "one per click" in response.message, response.message
    assert not ros_client.call(ros_client.remove, RemoveObjects.Request(object_ids=[2])).success
    assert ros_client.call(ros_client.remove, RemoveObjects.Request(object_ids=[4])).success


def test_boxes_start_tracking_over_dds_and_bad_boxes_are_refused(node, ros_client, clip):
    """A detector's box (no mask) starts an object; a mask and a box start two; bad boxes get
    clear answers and change nothing."""
    frames, masks = clip
    car = mask_box(masks[0] > 0)
    request = ros_client.targets_request(None, SECOND, replace=True, image=frames[0], boxes={4: car})
    response = ros_client.call(ros_client.set_targets, request)
    assert response.success, response.message
    assert list(response.object_ids) == [4]
    left = np.zeros_like(masks[0])
    left[:40, :40] = 1
    both = ros_client.targets_request(left, SECOND, replace=True, image=frames[0], boxes={2: car})
    response = ros_client.call(ros_client.set_targets, both)
    assert response.success and sorted(response.object_ids) == [1, 2], response.message
    for boxes, message in [
        ({3: (50, 50, 50, 90)}, "empty"),
        ({3: (5000, 10, 5100, 40)}, "outside"),
        ({1: car}, "also ids of the mask"),
        ({3: (0, 0, 20, 20)}, "lie entirely under the mask's objects"),
    ]:
        bad = ros_client.targets_request(left, SECOND, image=frames[0], boxes=boxes)
        response = ros_client.call(ros_client.set_targets, bad)
        assert not response.success and message in response.message, response.message
    mismatched = ros_client.targets_request(None, SECOND, image=frames[0], boxes={3: car})
    mismatched.box_ids.append(5)
    response = ros_client.call(ros_client.set_targets, mismatched)
    assert not response.success and "one id per box" in response.message
    nothing = ros_client.targets_request(None, SECOND, image=frames[0])
    response = ros_client.call(ros_client.set_targets, nothing)
    assert not response.success and "no mask, no boxes and no clicks" in response.message
    # Nothing changed: objects 1 and 2 are tracked, 3 and 5 never were.
    assert not ros_client.call(ros_client.remove, RemoveObjects.Request(object_ids=[3])).success
    assert ros_client.call(ros_client.remove, RemoveObjects.Request(object_ids=[1, 2])).success

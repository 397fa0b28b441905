"""Launch files (where ROS 2 `launch` is installed) and the default parameter file."""

import importlib.util
from pathlib import Path

import pytest
import yaml

from ros2_ttvos.ros.parameters import PARAMETERS

ROOT = Path(__file__).resolve().parents[1]


def test_default_parameter_file_matches_the_declared_parameters():
    values = yaml.safe_load((ROOT / "config" / "ttvos.yaml").read_text())["/**"]["ros__parameters"]
    assert values == {name: default for name, (default, _) in PARAMETERS.items()}


def test_every_parameter_has_a_description():
    assert all(descriptor.description for _, descriptor in PARAMETERS.values())


@pytest.mark.parametrize("name", ["ttvos.launch.py", "multi_camera.launch.py"])
def test_launch_file_builds_a_description(name):
    pytest.importorskip("launch_ros", reason="ROS 2 launch is not installed here (PyPI wheels have no launch)")
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), ROOT / "launch" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert description.entities

"""The TTVOS network (tensors only: no file I/O, no numpy images, no ROS)."""

from ros2_ttvos.model.losses import ttvos_losses
from ros2_ttvos.model.ttvos import TTVOS, StepOutput, TemplateState, TTVOSConfig

__all__ = ["TTVOS", "TTVOSConfig", "TemplateState", "StepOutput", "ttvos_losses"]

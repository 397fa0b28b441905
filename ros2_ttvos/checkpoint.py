"""Reading and writing checkpoints (the tracker's and the box head's): atomic writes, clear errors
for damaged files."""

import io
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch

from ros2_ttvos.model import TTVOS, TTVOSConfig
from ros2_ttvos.model.box_head import BoxHead, BoxHeadConfig, BoxPrompter

LOG = logging.getLogger(__name__)

FORMAT = "ros2_ttvos/1"
SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights" / "ttvos_lite0.pt"


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, corrupt or not ours."""


def save_atomic(payload: Dict[str, Any], path: Union[str, Path]) -> None:
    """Write ``payload`` with torch.save to a temporary file beside ``path``, then rename.

    A crash or a full disk leaves the previous file untouched; the error propagates (OSError).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_archive(path: Union[str, Path], what: str) -> Any:
    """What torch.save wrote to ``path``; CheckpointError naming ``what`` when the file is missing,
    not a zip archive, truncated, or fails a member's CRC.

    The file is read once; the archive is checked in Python before torch reads it: torch loads an
    archive with a flipped byte without complaint, and a node whose torch reader had failed on a
    truncated file crashed now and then in torch's teardown at exit (docs/node-failures.md).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        data = path.read_bytes()
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            damaged = archive.testzip()
        if damaged is not None:
            raise zipfile.BadZipFile(f"CRC of {damaged} does not match")
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # zipfile and torch raise several types for damaged archives
        raise CheckpointError(f"{what} {path} is truncated or corrupt ({type(error).__name__}: {error})") from error


def load(path: Union[str, Path]) -> Dict[str, Any]:
    """Load a checkpoint dict; raise CheckpointError saying what is wrong with the file."""
    path = Path(path)
    payload = read_archive(path, "checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "model" not in payload:
        raise CheckpointError(f"{path} is not a ros2_ttvos checkpoint (expected format {FORMAT!r})")
    return payload


def model_payload(model: TTVOS, half: bool = False, **extra: Any) -> Dict[str, Any]:
    """The dict to save for ``model`` (optionally with float16 weights), plus ``extra`` entries."""
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    return {"format": FORMAT, "config": model.config.to_dict(), "model": state, **extra}


def model_weights(payload: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """The network weights of a loaded checkpoint in float32 (shipped weights are stored in float16)."""
    return {k: v.float() if v.is_floating_point() else v for k, v in payload["model"].items()}


def build_model(payload: Optional[Dict[str, Any]] = None, overrides: Optional[Dict[str, Any]] = None) -> TTVOS:
    """A TTVOS network from a loaded checkpoint, or with ImageNet backbone and fresh head if None.

    overrides: ``TTVOSConfig`` switches to change from the checkpoint's (e.g. an ablation at test time).
    """
    if payload is None:
        return TTVOS(TTVOSConfig(**(overrides or {})), pretrained_backbone=True)
    try:
        config = TTVOSConfig(**{**payload.get("config", {}), **(overrides or {})})
    except TypeError as error:
        raise CheckpointError(f"checkpoint configuration does not match this version: {error}") from error
    model = TTVOS(config, pretrained_backbone=False)
    try:
        model.load_state_dict(model_weights(payload), strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint weights do not fit the network: {error}") from error
    return model


def export_weights(source: Path, out: Path) -> None:
    """Write the model of checkpoint ``source`` as float16 shipped weights; warn when the shipped
    box head was trained on another frozen trunk (it would not be used with them)."""
    payload = load(source)
    model = build_model(payload)
    extra = {key: payload[key] for key in ("step", "holdout") if key in payload}
    save_atomic(model_payload(model, half=True, **extra), out)
    if SHIPPED_BOX_HEAD.is_file() and box_prompter(model) is None:  # it says why
        LOG.warning(
            "with %s box prompts would fall back to the network method; train a box head for these "
            "weights (ttvos-box-train) before shipping both",
            out,
        )


# --- the box head (model/box_head.py): a file of its own beside the tracker weights -------------
BOX_HEAD_FORMAT = "ros2_ttvos/box-head/1"
SHIPPED_BOX_HEAD = SHIPPED_WEIGHTS.parent / "ttvos_box_head.pt"


def box_head_payload(head: BoxHead, trunk_digest: str, half: bool = False, **extra: Any) -> Dict[str, Any]:
    """The dict to save for a box head trained on the frozen trunk of digest ``trunk_digest``."""
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in head.state_dict().items()}
    return {"format": BOX_HEAD_FORMAT, "config": head.config.to_dict(), "head": state, "trunk": trunk_digest, **extra}


def load_box_head(path: Union[str, Path]) -> Tuple[BoxHead, Dict[str, Any]]:
    """(head, the file's payload) from a box head file; ``payload["trunk"]`` is the digest of the
    frozen trunk it was trained on. CheckpointError saying what is wrong with the file."""
    payload = read_archive(path, "box head")
    if not isinstance(payload, dict) or payload.get("format") != BOX_HEAD_FORMAT:
        raise CheckpointError(f"{path} is not a ros2_ttvos box head (expected format {BOX_HEAD_FORMAT!r})")
    config = payload["config"]
    head = BoxHead(BoxHeadConfig(crop=int(config["crop"]), widths=tuple(config["widths"])))
    try:
        head.load_state_dict({k: v.float() for k, v in payload["head"].items()}, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"box head {path} does not fit this version: {error}") from error
    return head.eval(), payload


def box_prompter(model: TTVOS, path: Optional[Union[str, Path]] = None) -> Optional[BoxPrompter]:
    """The box head for ``model`` (file ``path``; None: the shipped one), sharing its backbone;
    None, with a warning, when there is no such file or the head was trained on another trunk."""
    path = SHIPPED_BOX_HEAD if path is None else Path(path)
    if not path.is_file():
        LOG.warning("no box head at %s: box prompts use the network or grabcut methods", path)
        return None
    head, payload = load_box_head(path)
    if payload["trunk"] != model.backbone.frozen_digest():
        LOG.warning("box head %s was trained on another backbone trunk: not used", path)
        return None
    return BoxPrompter(model.backbone, head).eval()

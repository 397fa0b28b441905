"""``ttvos-export``: the inference path as ONNX graphs with the per-object state as explicit tensors.

    ttvos-export [--weights W] --out DIR

Writes DIR/encoder.onnx (what ``Tracker.add_objects`` runs), DIR/step.onnx (one ``Tracker.step``
for all objects: segment, merge, score, update the state), DIR/box.onnx (the box head: prompt
crops to masks, when the weights have one: ``checkpoint.box_prompter``) and DIR/state.json
describing the inputs, outputs and state tensors. Image size and object count are dynamic. The
export is checked with ONNX Runtime against PyTorch at a size and object count other than the
traced ones before the command reports success.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from ros2_ttvos import checkpoint
from ros2_ttvos.backends import EXPORT_FORMAT, STATE_INPUTS, OnnxRuntimeBackend, TorchBackend
from ros2_ttvos.model import TTVOS
from ros2_ttvos.model.box_head import BoxPrompter
from ros2_ttvos.model.merge import soft_aggregate
from ros2_ttvos.model.streaming import ObjectEncoder, TrackingStep

OPSET = 17
STATE_AXES = {
    "hist": {0: "objects", 2: "height_8", 3: "width_8"},
    "st": {0: "objects", 2: "height_16", 3: "width_16"},
    "lt": {0: "objects"},
    "updates": {0: "objects"},
    "area": {0: "objects"},
}
IMAGE_AXES = {2: "height", 3: "width"}


def _sample(height: int, width: int, objects: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, height, width, generator=generator) * 255
    masks = torch.zeros(objects, 1, height, width)
    for k in range(objects):
        x0 = int(width * (0.1 + 0.8 * k / objects))
        masks[k, :, height // 4 : 3 * height // 4, x0 : x0 + max(4, int(0.6 * width / objects))] = 1
    return image, masks


STEP_OUTPUTS = ["slots", "confidence", "foreground", *(f"{name}_out" for name in STATE_INPUTS)]


def _export_graphs(model: TTVOS, image: torch.Tensor, masks: torch.Tensor, state, out: Path) -> None:
    with warnings.catch_warnings():
        # Intended: the tap-selection matrix of layers.transposed_conv_as_conv is a trace constant.
        warnings.filterwarnings("ignore", "torch.tensor results are registered as constants", torch.jit.TracerWarning)
        torch.onnx.export(
            ObjectEncoder(model), (image, masks), out / "encoder.onnx",
            input_names=["image", "masks"], output_names=list(STATE_INPUTS),
            dynamic_axes={"image": IMAGE_AXES, "masks": {0: "objects", **IMAGE_AXES}, **STATE_AXES},
            opset_version=OPSET, dynamo=False,
        )  # fmt: skip
        torch.onnx.export(
            TrackingStep(model), (image, *state, *(torch.tensor(v) for v in (0.5, 1.0, 1.0, 1.0))),
            out / "step.onnx",
            input_names=["image", *STATE_INPUTS, "threshold", "hold_state", "search", "region_state"],
            output_names=STEP_OUTPUTS,
            dynamic_axes={
                "image": IMAGE_AXES, **STATE_AXES,
                "slots": IMAGE_AXES, "confidence": {0: "objects"},
                "foreground": {0: "objects", 1: "height", 2: "width"},
                **{f"{name}_out": axes for name, axes in STATE_AXES.items()},
            },
            opset_version=OPSET, dynamo=False,
        )  # fmt: skip


def _export_box_graph(prompter: BoxPrompter, out: Path) -> Dict:
    size = prompter.head.config.crop
    crops = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0)) * 255
    prompts = torch.zeros(2, 3, size, size)
    prompts[:, 0, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    torch.onnx.export(
        prompter, (crops, prompts), out / "box.onnx", input_names=["crops", "prompts"], output_names=["probability"],
        dynamic_axes={"crops": {0: "boxes"}, "prompts": {0: "boxes"}, "probability": {0: "boxes"}},
        opset_version=OPSET, dynamo=False,
    )  # fmt: skip
    return {
        "crop": size,
        "inputs": [f"crops (boxes, 3, {size}, {size}) float32 RGB in [0, 255]", f"prompts (boxes, 3, {size}, {size})"],
        "outputs": [f"probability (boxes, 1, {size}, {size})"],
    }


def export(model: TTVOS, out: Path, prompter: Optional[BoxPrompter] = None) -> Dict:
    """Write the graphs and state.json for ``model`` (and its box head ``prompter``, if any)
    into ``out``; returns the description."""
    model = model.float().eval()
    out.mkdir(parents=True, exist_ok=True)
    image, masks = _sample(96, 160, 2)
    with torch.no_grad():
        state = ObjectEncoder(model)(image, masks)
        _export_graphs(model, image, masks, state, out)
        box = _export_box_graph(prompter.float().eval(), out) if prompter is not None else None
    description = {
        "format": EXPORT_FORMAT,
        "opset": OPSET,
        "image": "(1, 3, height, width) float32 RGB in [0, 255]; height and width multiples of 16",
        "encoder": {"inputs": ["image", "masks (objects, 1, height, width) float32 in {0, 1}"],
                    "outputs": list(STATE_INPUTS)},
        "step": {"inputs": ["image", *STATE_INPUTS, "threshold () float32", "hold_state () float32 in {0, 1}",
                            "search () float32 in {0, 1} (model/search_region.py)",
                            "region_state () float32 in {0, 1} (model/streaming.py)"],
                 "outputs": STEP_OUTPUTS},
        "state": {name: {"shape": [str(axes.get(i, d)) for i, d in enumerate(t.shape)], "dtype": "float32"}
                  for (name, axes), t in zip(STATE_AXES.items(), state, strict=True)},
        "config": model.config.to_dict(),
        "box": box,
    }  # fmt: skip
    (out / "state.json").write_text(json.dumps(description, indent=2))
    return description


def validate(model: TTVOS, out: Path, steps: int = 3, prompter: Optional[BoxPrompter] = None) -> Dict[str, float]:
    """Run both backends on a size and object count other than the traced ones; return the gaps."""
    torch_backend = TorchBackend(model, "cpu", box_prompter=prompter)
    onnx_backend = OnnxRuntimeBackend(out, "cpu")
    image, masks = _sample(128, 224, 3, seed=1)
    image_np, masks_np = image.numpy(), masks.numpy()
    state_t = torch_backend.encode(image_np, masks_np)
    state_o = onnx_backend.encode(image_np, masks_np)
    worst = {"state": max(float(np.abs(a - b).max()) for a, b in zip(state_t, state_o, strict=True))}
    worst.update(foreground=0.0, confidence=0.0, slots_equal=1.0)
    for index in range(steps):
        frame = _sample(128, 224, 3, seed=2 + index)[0].numpy()
        switches = (index % 2 == 0, index % 3 != 2, index % 3 != 1)  # hold_state, search, region_state
        slots_t, conf_t, fg_t, state_t = torch_backend.step(frame, state_t, 0.5, *switches)
        slots_o, conf_o, fg_o, state_o = onnx_backend.step(frame, state_o, 0.5, *switches)
        worst["foreground"] = max(worst["foreground"], float(np.abs(fg_t - fg_o).max()))
        worst["confidence"] = max(worst["confidence"], float(np.abs(conf_t - conf_o).max()))
        # Pixels where two objects' merged probabilities tie within 1e-4 may go either way.
        top2 = torch.topk(soft_aggregate(torch.from_numpy(fg_t)), 2, dim=0).values
        decided = (top2[0] - top2[1] > 1e-4).numpy()
        worst["slots_equal"] = min(worst["slots_equal"], float(np.mean(slots_t[decided] == slots_o[decided])))
    if prompter is not None:
        size = prompter.head.config.crop
        crops = _sample(size, size, 1, seed=9)[0].repeat(3, 1, 1, 1).numpy()
        prompts = np.zeros((3, 3, size, size), np.float32)
        prompts[:, 0, size // 5 : size // 2, size // 3 : 4 * size // 5] = 1
        worst["box"] = float(np.abs(torch_backend.box(crops, prompts) - onnx_backend.box(crops, prompts)).max())
    disagree = worst["foreground"] > 1e-3 or worst["confidence"] > 1e-3 or worst["slots_equal"] < 0.999
    if disagree or worst.get("box", 0.0) > 1e-3:
        raise RuntimeError(f"ONNX Runtime disagrees with PyTorch: {worst}")
    return worst


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ros2_ttvos" / "exports"


def graph_code_digest() -> str:
    """Digest of the source files that define the exported graphs.

    Part of the cache key: a new version of the network code exports the same weights again
    instead of running graphs traced from the old code.
    """
    from ros2_ttvos.model import backbone, box_head, layers, merge, search_region, streaming, ttvos

    digest = hashlib.sha256(EXPORT_FORMAT.encode())
    for module in (backbone, box_head, layers, ttvos, merge, search_region, streaming, sys.modules[__name__]):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


def cached_export(weights: Path) -> Path:
    """An export folder for checkpoint ``weights`` (with the shipped box head where it fits), made
    once (validated) and kept in the user cache.

    The folder is keyed by the checkpoint's, the box head's and the network code's digests.
    """
    hashed = hashlib.sha256(weights.read_bytes())
    if checkpoint.SHIPPED_BOX_HEAD.is_file():
        hashed.update(checkpoint.SHIPPED_BOX_HEAD.read_bytes())
    digest = hashed.hexdigest()[:16]
    folder = cache_root() / f"{digest}-{graph_code_digest()}"
    if (folder / "state.json").is_file():
        return folder
    model = checkpoint.build_model(checkpoint.load(weights))
    prompter = checkpoint.box_prompter(model)
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=folder.parent))
    try:
        export(model, scratch, prompter)
        validate(model, scratch, prompter=prompter)
        try:
            os.rename(scratch, folder)  # atomic: a half-written export is never visible
        except OSError:
            if not (folder / "state.json").is_file():  # not another process's export
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="ttvos-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, help="checkpoint (default: the shipped weights)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--box-head", type=Path, help="box head file (default: the shipped one, where it fits)")
    parser.add_argument("--int8", action="store_true", help="also an int8 step graph (precision int8; needs NNCF)")
    parser.add_argument("--calibration", type=Path, metavar="DAVIS_ROOT", help="DAVIS16 train frames for --int8")
    parser.add_argument(
        "--calibration-sequences", type=lambda s: [x for x in s.split(",") if x],
        default=["bear", "bus", "dog-agility", "flamingo", "kite-walk", "mallard-water", "paragliding", "scooter-gray"],
        help="training sequences (never the hold-out ones) whose frames calibrate --int8",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.int8 and args.calibration is None:
        parser.error("--int8 needs --calibration DAVIS_ROOT (training frames)")
    try:
        if args.weights is None and not checkpoint.SHIPPED_WEIGHTS.is_file():
            raise ValueError("no shipped weights to export: pass --weights")
        model = checkpoint.build_model(checkpoint.load(args.weights or checkpoint.SHIPPED_WEIGHTS))
        prompter = checkpoint.box_prompter(model, args.box_head)
        export(model, args.out, prompter)
        gaps = validate(model, args.out, prompter=prompter)
        if args.int8:
            from ros2_ttvos.quantize import write_int8_step

            int8 = write_int8_step(args.out, args.calibration.expanduser(), args.calibration_sequences)
            print(f"int8 step graph: {int8}")
    except (ValueError, RuntimeError, OSError) as error:
        print(f"ttvos-export failed: {error}", file=sys.stderr)
        return 1
    print(
        f"exported to {args.out}: encoder.onnx, step.onnx, {'box.onnx, ' if 'box' in gaps else ''}state.json; "
        "checked with ONNX Runtime "
        f"(foreground max diff {gaps['foreground']:.2e}, confidence {gaps['confidence']:.2e}, "
        f"labels equal on {100 * gaps['slots_equal']:.3f} % of the pixels that are not ties"
        + (f"; box head max diff {gaps['box']:.2e})" if "box" in gaps else ")")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

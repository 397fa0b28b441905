"""Several targets in one clip: cut-outs pasted over a moving scene, each on its own path.

A robot tracks several things that cross, hide each other, enter and leave the view, among
look-alikes. No multi-object video set is reachable here, so such clips are composed: a scene
clip (a DAVIS train clip, or a still image set in motion) whose own object is a target or not,
and cut-outs (objects cut from still images or DAVIS train frames by their masks) that move over
it with their own position, speed, scale change and depth, some of them targets, some
distractors, a distractor sometimes a copy of a target (the same kind of thing). A cut-out may
change depth half way (it passes behind another instead of in front) and its path may start or
end outside the view. Training (``ttvos-train``) and the multi-object benchmark
(``ttvos-data multi``) are both made with ``compose``. Two more changes of a training clip:
``add_look_alike`` sends a copy of one of its targets through it (another of the herd), and
``hide_behind`` sweeps an opaque panel over one target, so that it is hidden for a few frames and
comes back.
"""

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import cv2
import numpy as np

from ros2_ttvos.data.clips import Clip, StillSampler

MIN_VISIBLE = 0.002  # a target's share of the first frame, at least
OUTSIDE = 0.25  # how far beyond the frame edge (share of the frame) a path may start or end
PANEL_COVER = (1.5, 3.0)  # a hiding panel's extent over the hidden target's, along its sweep
PANEL_MARGIN = 1.3  # ... and across it


@dataclass(frozen=True)
class CutOut:
    """An object cut by its mask, cropped to its bounding box."""

    image: np.ndarray  # (h, w, 3) uint8 RGB
    alpha: np.ndarray  # (h, w) float32 in [0, 1]

    @classmethod
    def from_mask(cls, image: np.ndarray, mask: np.ndarray) -> Optional["CutOut"]:
        ys, xs = np.nonzero(mask)
        if len(ys) < 64:
            return None
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        alpha = cv2.GaussianBlur((mask[y0:y1, x0:x1] > 0).astype(np.float32), (3, 3), 0)
        return cls(np.ascontiguousarray(image[y0:y1, x0:x1]), alpha)

    def flipped(self) -> "CutOut":
        return CutOut(np.ascontiguousarray(self.image[:, ::-1]), np.ascontiguousarray(self.alpha[:, ::-1]))


@dataclass(frozen=True)
class Trajectory:
    """Where a cut-out is on each frame: centre, scale and depth (higher is nearer)."""

    start: np.ndarray  # (x, y) centre on frame 0, pixels
    end: np.ndarray  # (x, y) centre on the last frame
    scale: Tuple[float, float]  # first and last frame
    angle: Tuple[float, float]  # degrees, first and last frame
    depth: Tuple[float, float]  # before and after the depth change
    depth_change: float  # share of the clip at which the depth changes (> 1: never)

    def at(self, share: float) -> Tuple[np.ndarray, float, float, float]:
        centre = self.start + share * (self.end - self.start)
        scale = self.scale[0] * (self.scale[1] / self.scale[0]) ** share
        angle = self.angle[0] + share * (self.angle[1] - self.angle[0])
        return centre, scale, angle, self.depth[0] if share < self.depth_change else self.depth[1]


@dataclass(frozen=True)
class Sprite:
    cut: CutOut
    path: Trajectory
    label: int  # target id, 0 for a distractor


def random_path(
    rng: np.random.Generator,
    cut: CutOut,
    size: Tuple[int, int],
    towards: Optional[np.ndarray],
    frames: int,
    max_travel: Optional[float] = None,
) -> Trajectory:
    """A path for ``cut`` in a frame of ``size`` (h, w): covering 2-15 % of the frame, moving up to
    3 % of the frame width a frame (and at most ``max_travel`` frame widths in all, if given),
    often through ``towards`` (another object: they cross), with its start or end outside the
    view now and then; a third of the paths change depth."""
    h, w = size
    area = rng.uniform(0.02, 0.15) * h * w
    scale = float(np.sqrt(area / max(1.0, cut.alpha.sum())))
    start = rng.uniform([0.1 * w, 0.1 * h], [0.9 * w, 0.9 * h])
    if towards is not None and rng.random() < 0.7:
        direction = towards - start + rng.normal(0, 0.05 * w, size=2)
    else:
        direction = rng.normal(size=2)
    direction = direction / max(1e-6, float(np.linalg.norm(direction)))
    travel = rng.uniform(0.003, 0.03) * w * (frames - 1)
    if max_travel is not None:
        travel = min(travel, max_travel * w)
    end = start + direction * travel
    if rng.random() < 0.2:  # leaves the view: the end beyond an edge
        end = start + direction * max(travel, 0.6 * w)
    limit = np.array([w, h]) * (1 + OUTSIDE)
    end = np.clip(end, -OUTSIDE * np.array([w, h]), limit)
    if rng.random() < 0.15:  # enters the view: swap the ends (it starts outside, comes in)
        start, end = end, start
    growth = float(np.exp(rng.uniform(-0.4, 0.4)))
    depth = tuple(rng.uniform(0, 1, size=2)) if rng.random() < 0.33 else (float(rng.uniform(0, 1)),) * 2
    return Trajectory(
        start=start,
        end=end,
        scale=(scale, scale * growth),
        angle=(float(rng.uniform(-15, 15)), float(rng.uniform(-15, 15))),
        depth=depth,
        depth_change=float(rng.uniform(0.2, 0.8)),
    )


def _render(sprite: Sprite, share: float, size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray, float]:
    """The sprite's colour and alpha in a frame of ``size`` at ``share`` of the clip, and its depth."""
    centre, scale, angle, depth = sprite.path.at(share)
    ch, cw = sprite.cut.alpha.shape
    matrix = cv2.getRotationMatrix2D((cw / 2, ch / 2), angle, scale)
    matrix[:, 2] += centre - np.array([cw / 2, ch / 2])
    colour = cv2.warpAffine(sprite.cut.image, matrix, size[::-1], flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(sprite.cut.alpha, matrix, size[::-1], flags=cv2.INTER_LINEAR)
    return colour, alpha, depth


def compose(scene: Clip, scene_label: int, sprites: List[Sprite]) -> Clip:
    """Paste ``sprites`` over ``scene`` (frames and a {0, 1} mask of its object) in depth order.

    The scene's object gets ``scene_label`` (0: a distractor); every sprite's visible pixels get
    its own label. Returns frames (T, H, W, 3) uint8 and labels (T, H, W) uint8.
    """
    frames, masks = scene
    t = len(frames)
    size = frames.shape[1:3]
    out_frames, out_labels = [], []
    for index in range(t):
        share = index / max(1, t - 1)
        frame = frames[index].astype(np.float32)
        labels = masks[index].astype(np.uint8) * scene_label
        layers = [(_render(sprite, share, size), sprite.label) for sprite in sprites]
        for (colour, alpha, _), label in sorted(layers, key=lambda layer: layer[0][2]):
            frame = frame + alpha[..., None] * (colour.astype(np.float32) - frame)
            labels = np.where(alpha > 0.5, np.uint8(label), labels)
        out_frames.append(np.clip(frame, 0, 255).astype(np.uint8))
        out_labels.append(labels)
    return np.stack(out_frames), np.stack(out_labels)


CutOutSampler = Callable[[np.random.Generator], CutOut]


def cut_out_sampler(sample_still: StillSampler) -> CutOutSampler:
    """Cut-outs from the objects of still images / annotated frames drawn by ``sample_still``."""

    def sample(rng: np.random.Generator) -> CutOut:
        for _ in range(20):
            cut = CutOut.from_mask(*sample_still(rng))
            if cut is not None:
                return cut.flipped() if rng.random() < 0.5 else cut
        raise ValueError("no object of at least 64 pixels in 20 sampled images")

    return sample


def multi_object_clip(
    scene: Clip,
    targets: int,
    rng: np.random.Generator,
    sample_cut: CutOutSampler,
    max_distractors: int = 2,
    max_travel: Optional[float] = None,
) -> Optional[Clip]:
    """``targets`` targets (labels 1..targets) over ``scene``: the scene's object (most often) and
    pasted cut-outs, plus 0 to ``max_distractors`` distractors, half of the time one of them a
    copy of a target. None when a target is not visible on the first frame (draw again)."""
    frames, masks = scene
    size = frames.shape[1:3]
    scene_is_target = bool(masks[0].any()) and rng.random() < 0.8
    ys, xs = np.nonzero(masks[0])
    anchor = np.array([xs.mean(), ys.mean()]) if len(ys) else None
    first_label = 2 if scene_is_target else 1
    cuts = [sample_cut(rng) for _ in range(targets - (1 if scene_is_target else 0))]
    sprites = []
    for offset, cut in enumerate(cuts):
        sprites.append(Sprite(cut, random_path(rng, cut, size, anchor, len(frames), max_travel), first_label + offset))
        anchor = sprites[-1].path.start if anchor is None or rng.random() < 0.5 else anchor
    for _ in range(int(rng.integers(0, max_distractors + 1))):
        same_kind = cuts and rng.random() < 0.5  # the same kind of thing as a target
        cut = _look_alike(cuts[int(rng.integers(len(cuts)))], rng) if same_kind else sample_cut(rng)
        sprites.append(Sprite(cut, random_path(rng, cut, size, anchor, len(frames), max_travel), 0))
    out_frames, labels = compose((frames, masks), 1 if scene_is_target else 0, sprites)
    visible = [(labels[0] == k).mean() for k in range(1, targets + 1)]
    if min(visible) < MIN_VISIBLE:
        return None
    return out_frames, labels


def _look_alike(cut: CutOut, rng: np.random.Generator) -> CutOut:
    """``cut`` mirrored half of the time, its colours a little off: another of the same kind."""
    cut = cut.flipped() if rng.random() < 0.5 else cut
    gain = rng.uniform(0.85, 1.15, size=3)
    return CutOut(np.clip(cut.image * gain, 0, 255).astype(np.uint8), cut.alpha)


def add_look_alike(clip: Clip, rng: np.random.Generator, max_travel: Optional[float] = None) -> Clip:
    """``clip`` with a look-alike of one of its targets passing through it as a distractor.

    The copy is cut from one of the clip's own frames, so that the scene's own object gets
    look-alikes too (another camel of a herd, another dancer of a troupe), not only pasted
    cut-outs; its colours are a little off (``_look_alike``). It moves on a path of its own
    (``random_path``), most often across the target's, in front of every target half of the time
    and behind them the other half. Labels stay exact: the copy is background (0). Returned
    unchanged when the drawn target shows under 64 pixels on the drawn frame."""
    frames, labels = clip
    target = int(rng.integers(1, int(labels[0].max()) + 1))
    index = int(rng.integers(len(frames)))
    cut = CutOut.from_mask(frames[index], labels[index] == target)
    if cut is None:
        return clip
    ys, xs = np.nonzero(labels[0] == target)
    anchor = np.array([xs.mean(), ys.mean()]) if len(ys) else None
    path = random_path(rng, cut, labels.shape[1:3], anchor, len(frames), max_travel)
    copied_frames, copied_labels = compose(clip, 1, [Sprite(_look_alike(cut, rng), path, 0)])
    if rng.random() < 0.5:  # behind the targets: it shows only over the background
        in_front = labels > 0
        copied_frames = np.where(in_front[..., None], frames, copied_frames)
        copied_labels = np.where(in_front, labels, copied_labels)
    return copied_frames, copied_labels


def hide_behind(clip: Clip, rng: np.random.Generator, sample_cut: CutOutSampler) -> Clip:
    """``clip`` with one of its targets hidden behind an opaque panel in front of everything (a
    still image's crop, like a pole, a wall or a parked vehicle passing the camera) for a few
    frames and out again, so that the tracker has to find it again from its templates.

    The panel sweeps across the target's box (its union over the hidden frames) between frames a
    third and two fifths into the clip, as many times as wide as the target along the sweep
    (``PANEL_COVER``). Labels stay exact (a hidden target has none). Returned unchanged when the
    clip is under 5 frames or the panel would cover anything labelled on frame 0 (every first
    mask stays whole)."""
    frames, labels = clip
    length = len(frames)
    if length < 5:
        return clip
    height, width = labels.shape[1:3]
    target = int(rng.integers(1, int(labels[0].max()) + 1))
    middle = int(rng.integers(length // 3, max(length // 3, (2 * length) // 5) + 1))
    window = labels[max(1, middle - 1) : middle + 2] == target
    if not window.any():
        return clip
    ys, xs = np.nonzero(window.any(axis=0))
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)
    centre, extent = (box[:2] + box[2:]) / 2, box[2:] - box[:2]
    axis = int(np.argmin(extent / np.array([width, height])))  # sweep along its narrower side
    along = extent[axis] * rng.uniform(*PANEL_COVER)
    across = extent[1 - axis] * PANEL_MARGIN + 8
    speed = (along + extent[axis]) / (2 * middle) * rng.uniform(1.0, 1.3)  # clear of the box on frame 0, if still
    direction = np.zeros(2)
    direction[axis] = 1.0 if rng.random() < 0.5 else -1.0
    size = (along, across) if axis == 0 else (across, along)
    texture = cv2.resize(sample_cut(rng).image, (max(2, round(size[0])), max(2, round(size[1]))))
    panel = CutOut(texture, np.ones(texture.shape[:2], np.float32))
    path = Trajectory(
        start=centre - direction * speed * middle,
        end=centre + direction * speed * (length - 1 - middle),
        scale=(1.0, 1.0),
        angle=(0.0, 0.0),
        depth=(2.0, 2.0),
        depth_change=2.0,
    )
    hidden = compose((frames, labels), 1, [Sprite(panel, path, 0)])
    return clip if np.any(hidden[1][0] != labels[0]) else hidden

"""Where each object is looked for in the next frame: its search region.

The network matches templates over the whole frame, so a look-alike anywhere in view can take an
object over (a car becomes every parked car). The search region weights each object's
foreground by its last mask dilated by ``RADIUS`` cells of 8 pixels at the internal size (72
pixels, 15 % of the short side, at the default 480), scaled so that its peak is 1: near where
the object was, its foreground stands; far from it, it fades to nothing. An object whose last mask
is less than half its usual area (``area`` of the state) is looked for everywhere: it is hidden
or lost (the confidence reads it so too), and may come back anywhere. The Tracker keeps only the
main piece of a last mask that has split (``ros2_ttvos.main_component``). Applied at
inference only (``TrackingStep``), switched by an input of the exported step so that it can
change at run time. Chosen and measured on the hold-out sequences: docs/accuracy.md.
"""

import torch
import torch.nn.functional as F

RADIUS = 9  # cells (stride 8 at the internal size) the last mask is dilated by; chosen on the hold-out (3-12)
HISTORY_FOREGROUND = 5  # the newest frame's foreground channel of ``hist`` (TemplateState)
EMPTY = 1.0e-3  # peak of a last mask that counts as empty
PRESENT = 0.5  # a last mask below this share of the object's usual area: looked for everywhere


def search_region(hist: torch.Tensor, area: torch.Tensor, shape) -> torch.Tensor:
    """(N, 1, H, W) weights in [0, 1] at the step's input size ``shape`` (H, W), from the
    objects' mask history ``hist`` (N, 6, H/8, W/8) and usual shares of the frame ``area`` (N,)."""
    last = hist[:, HISTORY_FOREGROUND : HISTORY_FOREGROUND + 1]
    dilated = F.max_pool2d(last, 2 * RADIUS + 1, stride=1, padding=RADIUS)
    peak = dilated.amax(dim=(2, 3), keepdim=True)
    present = last.mean(dim=(1, 2, 3)) >= PRESENT * area
    found = (peak > EMPTY) & present.view(-1, 1, 1, 1)
    region = torch.where(found, dilated / peak.clamp(min=EMPTY), torch.ones_like(dilated))
    return F.interpolate(region, size=shape, mode="bilinear", align_corners=False)

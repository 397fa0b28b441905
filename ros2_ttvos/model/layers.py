"""Building blocks of the TTVOS head (``model/ttvos.py``).

Most per-object layers convolve a concatenation of frame features and object tensors. They are
split into a frame part, computed once per frame, and an object part added to it
(``conv_part``, ``with_frame_part``); the costliest may be factorized through a few channels
(``factorized_conv``). Transposed convolutions run as plain convolutions followed by a pixel
shuffle (``transposed_conv_as_conv``), faster on the CPU.
"""

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def coordinate_channels(height: int, width: int, device: torch.device) -> torch.Tensor:
    """(1, 3, H, W): x and y in [-1, 1] and the radial distance from the centre."""
    ys = torch.linspace(-1.0, 1.0, height, device=device).view(1, 1, height, 1).expand(1, 1, height, width)
    xs = torch.linspace(-1.0, 1.0, width, device=device).view(1, 1, 1, width).expand(1, 1, height, width)
    return torch.cat([xs, ys, torch.sqrt(xs * xs + ys * ys) / math.sqrt(2.0)], dim=1)


def heatmap_at_stride(prob_fg: torch.Tensor, stride: int) -> torch.Tensor:
    """(N, 1, H, W) foreground probability -> (N, 2, H/stride, W/stride) [background, foreground]."""
    fg = F.avg_pool2d(prob_fg, stride) if stride > 1 else prob_fg
    return torch.cat([1.0 - fg, fg], dim=1)


def conv_part(conv: nn.Conv2d, x: torch.Tensor, channels: slice, bias: bool = False) -> torch.Tensor:
    """``conv`` (ungrouped) applied to its input channels ``channels`` only, with its bias if ``bias``.

    A convolution of concatenated inputs is the sum of such parts, one per input.
    """
    return F.conv2d(x, conv.weight[:, channels], conv.bias if bias else None, conv.stride, conv.padding)


def transposed_conv_as_conv(up: nn.ConvTranspose2d, weight=None, bias=None) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """(kernel, bias, padding) of the plain conv that, followed by ``pixel_shuffle(., stride)``,
    equals ``up`` (or ``up`` with ``weight`` and ``bias`` in place of its own).

    Output pixel s*i + a of a transposed conv (stride s, padding p, kernel k) sums input pixels
    i + d through kernel tap a + p - s*d: one small conv per output phase a, all phases as output
    channels (s*s per output channel). A conv with many outputs runs much faster on the CPU than
    a transposed conv with few. The kernel is built with matrix products of constants, which the
    runtimes fold when they load an exported graph.
    """
    weight = up.weight if weight is None else weight
    bias = up.bias if bias is None else bias
    (s, _), (p, _), (k, _) = up.stride, up.padding, up.kernel_size
    assert up.output_padding == (0, 0) and up.dilation == (1, 1) and up.groups == 1
    taps = {a: {d: a + p - s * d for d in range(-k, k + 1) if 0 <= a + p - s * d < k} for a in range(s)}
    reach = max(abs(d) for offsets in taps.values() for d in offsets)
    width = 2 * reach + 1
    phase_offsets = [(a, d) for a in range(s) for d in range(-reach, reach + 1)]
    select = torch.tensor(  # (tap, (phase, offset)): 1 where the phase reads the offset through the tap
        [[float(taps[a].get(d) == tap) for a, d in phase_offsets] for tap in range(k)],
        dtype=weight.dtype,
        device=weight.device,
    )
    c_in, c_out = weight.shape[:2]
    columns = weight @ select  # (c_in, c_out, k rows, (b, column offset))
    both = (columns.transpose(2, 3) @ select).view(c_in, c_out, s, width, s, width)  # (.., b, dj, a, di)
    kernel = both.permute(1, 4, 2, 0, 5, 3).reshape(c_out * s * s, c_in, width, width)
    return kernel, bias.repeat_interleave(s * s), reach


def with_frame_part(frame_part: torch.Tensor, object_part: torch.Tensor) -> torch.Tensor:
    """object part (N, ...) + frame part (1 or N, ...), broadcast over the objects.

    The object part comes first on purpose: OpenVINO's CPU plugin fuses the addition into the
    convolution that made its first operand, and fails there if that is the batch-1 frame part.
    """
    return object_part + frame_part


def branch_history_kernel(branch: nn.Sequential, hist_channels: slice) -> torch.Tensor:
    """The linear map from the mask history to a key/value/query branch's grouped 5x5 output.

    The branch's 1x1 projection of the history channels folded into its grouped 5x5 convolution:
    a dense 5x5 kernel (C, 2 * history frames, 5, 5), cheaper per object than the two layers.
    """
    project, spatial = branch[0], branch[1]
    groups, channels = spatial.groups, spatial.out_channels
    per_group = channels // groups
    w_project = project.weight[:, hist_channels, 0, 0].reshape(groups, per_group, -1)
    w_spatial = spatial.weight.reshape(groups, per_group, per_group, *spatial.kernel_size)
    return torch.einsum("goiuv,gij->gojuv", w_spatial, w_project).reshape(channels, -1, *spatial.kernel_size)


def key_value_branch(in_channels: int, out_channels: int, groups: int) -> nn.Sequential:
    """1x1 conv, then grouped 5x5 conv, LeakyReLU(0.2)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1),
        nn.Conv2d(out_channels, out_channels, 5, padding=2, groups=groups),
        nn.LeakyReLU(0.2),
    )


def factorized_conv(
    in_channels: int, out_channels: int, kernel: int, rank: int, bias: bool = True, reduce_input: Optional[bool] = None
) -> nn.Sequential:
    """A kxk conv factorized through ``rank`` channels; only the second conv has a bias, so that
    zero padding stays exact.

    reduce_input: 1x1 conv to ``rank`` channels, then the kxk conv; otherwise the kxk conv to
    ``rank`` channels, then a 1x1 conv. None: the kxk part goes on the narrower side.
    """
    padding = kernel // 2
    if reduce_input is None:
        reduce_input = in_channels >= out_channels
    if reduce_input:
        first = nn.Conv2d(in_channels, rank, 1, bias=False)
        second = nn.Conv2d(rank, out_channels, kernel, padding=padding, bias=bias)
    else:
        first = nn.Conv2d(in_channels, rank, kernel, padding=padding, bias=False)
        second = nn.Conv2d(rank, out_channels, 1, bias=bias)
    return nn.Sequential(first, second)


def conv_relu(
    in_channels: int, out_channels: int, kernel: int = 3, rank: int = 0, reduce_input: Optional[bool] = None
) -> nn.Sequential:
    """Conv, ReLU; with ``rank`` the conv is factorized (``factorized_conv``).

    Either way ``layer[0]`` takes the whole input (split layers cut it into parts) and
    ``layer[1:]`` is what follows the sum of the parts.
    """
    if rank:
        factorized = factorized_conv(in_channels, out_channels, kernel, rank, reduce_input=reduce_input)
        return nn.Sequential(*factorized, nn.ReLU(inplace=True))
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2), nn.ReLU(inplace=True))

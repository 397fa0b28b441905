"""The TTVOS network: template matching with short- and long-term templates.

Glossary (trailing digit = stride of a feature map relative to the padded input):
  f4, f8, f16   backbone features of the current frame (one per frame, all objects)
  hist          per-object heatmap history: background/foreground probabilities of the last
                three frames (6 channels), oldest first, at stride 8
  coords        3 coordinate channels (x, y, radial distance), at stride 8
  st            short-term template, (N, 2*I, H16, W16), built from the previous frame
  lt            long-term template, (N, L, L): fixed size, independent of the stream length
  attn          attention map A_t, (N, A, H8, W8), from which the decoder, the adaptive weight,
                the transition map and the auxiliary head read

N is the number of objects: the per-object part runs batched over N. Most per-object layers
convolve a concatenation of frame features and object tensors; convolution is linear, so each
such layer is split into a frame part, computed once per frame by ``encode_image``, and an
object part, added to it (see ``conv_part``). The weights are those of the unsplit layers.
``TTVOSConfig.head_ranks`` may factorize the costliest per-object layers through a few channels
(see ``factorized_conv`` and ``model.factorize``); each keeps the activation of its full-rank
form. Shapes are float32 unless stated.
"""

from dataclasses import asdict, dataclass, field
from typing import Dict, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ros2_ttvos.model.backbone import DEFAULT_VARIANT, STAGE_CHANNELS, LiteBackbone
from ros2_ttvos.model.layers import (
    branch_history_kernel,
    conv_part,
    conv_relu,
    coordinate_channels,
    factorized_conv,
    heatmap_at_stride,
    key_value_branch,
    transposed_conv_as_conv,
    with_frame_part,
)

HISTORY_FRAMES = 3
LONG_TERM_BRANCHES = ("query", "key", "value")
FACTORIZABLE_LAYERS = ("attention", "st_match", "final", "lt_history")


@dataclass(frozen=True)
class TTVOSConfig:
    """Widths and switches of the network (saved in every checkpoint)."""

    neck_channels: int = 128  # f16 after merging the upsampled f32
    short_term_channels: int = 64  # I of the paper's short-term matching
    long_term_channels: int = 64  # L: the long-term template is L x L
    long_term_groups: int = 4  # group count of the 5x5 key/value/query convolutions
    attention_channels: int = 48
    decoder_channels: int = 16
    trainable_backbone_blocks: int = 1
    backbone: str = DEFAULT_VARIANT  # or "efficientnet-lite1" (model/backbone.py)
    use_short_term: bool = True
    use_long_term: bool = True
    adaptive_update: bool = True  # False: fixed weight 1/(t+1), as in the paper's earlier work
    update_long_term: bool = True  # False: the long-term template stays as the first frame made it
    # Rank of each factorized per-object layer (keys from FACTORIZABLE_LAYERS); empty: the
    # paper's full-rank layers. "lt_history" is the mask-history path of the long-term branches.
    # "attention" and "final" convolve a concatenation with an upsampled short-term part: their
    # input is reduced to the rank, and that upsampling maps straight to the reduced width.
    head_ranks: Dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        unknown = sorted(set(self.head_ranks) - set(FACTORIZABLE_LAYERS))
        if unknown:
            raise ValueError(f"head_ranks: unknown layers {unknown} (factorizable: {FACTORIZABLE_LAYERS})")
        bad = {name: rank for name, rank in self.head_ranks.items() if not (isinstance(rank, int) and rank > 0)}
        if bad:
            raise ValueError(f"head_ranks must be positive integers, got {bad}")

    def to_dict(self) -> Dict:
        return asdict(self)


class TemplateState(NamedTuple):
    """Per-object tracking state; every field has a fixed size for a given frame size."""

    hist: torch.Tensor  # (N, 6, H8, W8) heatmaps of the last three frames, oldest first
    st: torch.Tensor  # (N, 2I, H16, W16) short-term template
    lt: torch.Tensor  # (N, L, L) long-term template
    updates: torch.Tensor  # (N,) number of template updates so far (for the fixed-rate ablation)


class StepOutput(NamedTuple):
    logits: Optional[torch.Tensor]  # (N, 2, H, W) background/foreground logits (None: not asked for)
    foreground: torch.Tensor  # (N, 1, H, W) foreground probability, softmax(logits)[:, 1:]
    weight: torch.Tensor  # (N,) adaptive update weight w_t in (0, 1)
    transition: torch.Tensor  # (N, 2, H8, W8) predicted transition map (training signal)
    aux_logits: torch.Tensor  # (N, 1, H8, W8) auxiliary foreground logits
    attn: torch.Tensor  # (N, A, H8, W8)


class TTVOS(nn.Module):
    """TTVOS with an EfficientNet-Lite0 (``TTVOSConfig.backbone``: or Lite1) backbone.

    Streaming use (what the tracker does):
      feats = net.encode_image(image)                     # once per frame
      state = net.init_state(feats, mask)                 # when an object is given
      out = net.segment(feats, state)                     # every later frame
      state = net.update_state(feats, state, out, prob_fg, keep_long_term)
    ``model.recurrent.ClipRunner`` runs whole clips for training.
    """

    def __init__(self, config: Optional[TTVOSConfig] = None, pretrained_backbone: bool = True):
        super().__init__()
        self.config = config = config or TTVOSConfig()
        self.backbone = LiteBackbone(pretrained_backbone, config.trainable_backbone_blocks, config.backbone)
        c4, c8, c16, c32 = (STAGE_CHANNELS[s] for s in (4, 8, 16, 32))
        i, lt, a, d = (
            config.short_term_channels,
            config.long_term_channels,
            config.attention_channels,
            config.decoder_channels,
        )
        ranks = config.head_ranks
        # The long-term branches read the clue [f8, hist, coords]; with a factorized history
        # path they read [f8, coords] and the history goes through ``lt_history``.
        history_in_clue = 0 if "lt_history" in ranks else 2 * HISTORY_FRAMES
        clue = history_in_clue + 3
        # Input channel ranges of the split layers (see conv_part).
        self._f8_in_clue = slice(0, c8)
        self._hist_in_clue = slice(c8, c8 + history_in_clue)
        self._coords_in_clue = slice(c8 + history_in_clue, None)
        self.neck = conv_relu(c16 + c32, config.neck_channels, 1)
        # Short-term matching: template from previous features + history, match with current.
        self.st_template = conv_relu(config.neck_channels + 2 * HISTORY_FRAMES, 2 * i)
        # Factorized, its 3x3 conv maps to the rank and a 1x1 conv follows (reducing its input
        # first cost a hold-out point: docs/accuracy.md).
        self.st_match = conv_relu(2 * i + config.neck_channels, i, rank=ranks.get("st_match", 0), reduce_input=False)
        # Long-term matching: query, key/value for the template, modified current features.
        self.lt_query = key_value_branch(c8 + clue, lt, config.long_term_groups)
        self.lt_key = key_value_branch(c8 + clue, lt, config.long_term_groups)
        self.lt_value = key_value_branch(c8 + clue, lt, config.long_term_groups)
        if "lt_history" in ranks:
            self.lt_history = nn.ModuleDict(
                {
                    name: factorized_conv(2 * HISTORY_FRAMES, lt, 5, ranks["lt_history"], bias=False)
                    for name in LONG_TERM_BRANCHES
                }
            )
        self.f8_modify = conv_relu(c8, lt, 1)
        self.lt_blend = conv_relu(2 * lt, lt, 1)
        # Attention map from both similarities: a 3x3 conv of [st_up(s_st), s_lt]. Factorized
        # (rank r): attention[0] reduces s_lt to r channels, st_up maps s_st to r channels, and
        # attention[1:] convolves their sum.
        if "attention" in ranks:
            self.st_up = nn.ConvTranspose2d(i, ranks["attention"], 4, stride=2, padding=1)
            self.attention = conv_relu(lt, a, rank=ranks["attention"], reduce_input=True)
        else:
            self.st_up = nn.ConvTranspose2d(i, i, 4, stride=2, padding=1)
            self.attention = conv_relu(i + lt, a)
        # Adaptive weight: 3x3 stride-2 conv, ReLU, global average pool, 1x1 conv, sigmoid.
        self.weight_conv = nn.Sequential(nn.Conv2d(a, a // 2, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.weight_out = nn.Conv2d(a // 2, 1, 1)
        # Training-only heads.
        self.transition_head = nn.Conv2d(a, 2, 3, padding=1)
        self.aux_head = nn.Conv2d(a, 1, 1)
        # Refinement decoder: stride 8 -> 4 (ConvTranspose), then -> 1 (ConvTranspose + PixelShuffle).
        self.up8 = nn.Sequential(conv_relu(a, d), nn.ConvTranspose2d(d, d, 4, stride=2, padding=1))
        self.f4_project = conv_relu(c4, d, 1)  # shared by all objects
        self.skip4 = conv_relu(2 * d, d)
        # The decoder's last conv reads [r4, r4_skip, st_up4(s_st)]; factorized like the attention.
        if "final" in ranks:
            self.st_up4 = nn.ConvTranspose2d(i, ranks["final"], 4, stride=4)
            final_conv = conv_relu(2 * d, d, rank=ranks["final"], reduce_input=True)
        else:
            self.st_up4 = nn.ConvTranspose2d(i, d, 4, stride=4)
            final_conv = conv_relu(3 * d, d)
        self.final = nn.Sequential(
            final_conv,
            nn.ConvTranspose2d(d, 8, 4, stride=2, padding=1),
            nn.PixelShuffle(2),
        )

    # --- per frame -----------------------------------------------------------------------
    def encode_image(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The frame parts of every per-object layer, computed once for all objects.

        image: (B, 3, H, W) float RGB in [0, 255], H and W multiples of 32.
        """
        f4, f8, f16, f32 = self.backbone(image)
        f32_up = F.interpolate(f32, size=f16.shape[-2:], mode="bilinear", align_corners=False)
        f16 = self.neck(torch.cat([f16, f32_up], dim=1))
        coords = coordinate_channels(f8.shape[-2], f8.shape[-1], f8.device).to(f8.dtype)
        neck, st_width, lt_width, d = (
            self.config.neck_channels,
            2 * self.config.short_term_channels,
            self.config.long_term_channels,
            self.config.decoder_channels,
        )

        def branch_part(branch: nn.Sequential) -> torch.Tensor:  # [f8, coords] through 1x1 and 5x5
            project = conv_part(branch[0], f8, self._f8_in_clue, bias=True)
            return branch[1](project + conv_part(branch[0], coords, self._coords_in_clue))

        return {
            "st_template": conv_part(self.st_template[0], f16, slice(0, neck), bias=True),
            "st_match": conv_part(self.st_match[0], f16, slice(st_width, None), bias=True),
            **{f"lt_{name}": branch_part(getattr(self, f"lt_{name}")) for name in LONG_TERM_BRANCHES},
            "lt_blend": conv_part(self.lt_blend[0], self.f8_modify(f8), slice(lt_width, None), bias=True),
            "skip4": conv_part(self.skip4[0], self.f4_project(f4), slice(d, None), bias=True),
        }

    # --- per object ----------------------------------------------------------------------
    def _branch(self, name: str, feats: Dict[str, torch.Tensor], hist: torch.Tensor) -> torch.Tensor:
        """Long-term branch ``name`` (query, key or value): frame part + history part."""
        branch = getattr(self, f"lt_{name}")
        if "lt_history" in self.config.head_ranks:
            hist_part = self.lt_history[name](hist)
        else:
            kernel = branch_history_kernel(branch, self._hist_in_clue)
            hist_part = F.conv2d(hist, kernel, padding=branch[1].padding)
        return branch[2](with_frame_part(feats[f"lt_{name}"], hist_part))

    def _embedding(self, feats: Dict[str, torch.Tensor], hist: torch.Tensor) -> torch.Tensor:
        """I_c = softmax_rows(key . value^T / sqrt(HW)): (N, L, L)."""
        key = self._branch("key", feats, hist).flatten(2).float()
        value = self._branch("value", feats, hist).flatten(2).float()
        # sqrt(HW) as a tensor op, so that an exported graph keeps it dynamic in the frame size.
        scale = torch.sqrt(torch._shape_as_tensor(key)[-1].to(key.dtype))
        # In float32 even under fp16 autocast: the sum over all pixels overflows float16.
        with torch.autocast(key.device.type, enabled=False):
            return torch.softmax(key @ value.transpose(1, 2) / scale, dim=-1)

    def _short_term_template(self, feats: Dict[str, torch.Tensor], hist: torch.Tensor) -> torch.Tensor:
        hist16 = F.avg_pool2d(hist, 2)
        hist_part = conv_part(self.st_template[0], hist16, slice(self.config.neck_channels, None))
        return self.st_template[1](with_frame_part(feats["st_template"], hist_part))

    def init_state(self, feats: Dict[str, torch.Tensor], prob_fg: torch.Tensor) -> TemplateState:
        """State of N objects from their given masks. prob_fg: (N, 1, H, W) in [0, 1]."""
        heat = heatmap_at_stride(prob_fg, 8)
        hist = torch.cat([torch.zeros_like(heat), torch.zeros_like(heat), heat], dim=1)
        n = prob_fg.shape[0]
        return TemplateState(
            hist=hist,
            st=self._short_term_template(feats, hist),
            lt=self._embedding(feats, hist),
            updates=torch.ones(n, device=prob_fg.device),
        )

    def segment(self, feats: Dict[str, torch.Tensor], state: TemplateState, with_logits: bool = True) -> StepOutput:
        """Segment the current frame for every object of ``state``.

        with_logits=False (inference) skips the two-class logits: the foreground probability
        then comes from their difference, which the last layer computes at half the cost.
        """
        n = state.hist.shape[0]
        st_width = 2 * self.config.short_term_channels
        if self.config.use_short_term:
            st_part = conv_part(self.st_match[0], state.st, slice(0, st_width))
            s_st = self.st_match[1:](with_frame_part(feats["st_match"], st_part))
        else:
            s_st = state.st.new_zeros(n, self.config.short_term_channels, *state.st.shape[-2:])
        if self.config.use_long_term:
            query = self._branch("query", feats, state.hist)
            z = (state.lt @ query.flatten(2)).view_as(query)
        else:
            z = state.hist.new_zeros(n, self.config.long_term_channels, *state.hist.shape[-2:])
        z_part = conv_part(self.lt_blend[0], z, slice(0, self.config.long_term_channels))
        s_lt = self.lt_blend[1](with_frame_part(feats["lt_blend"], z_part))
        ranks = self.config.head_ranks
        if "attention" in ranks:
            attn = self.attention[1:](self.attention[0](s_lt) + self.st_up(s_st))
        else:
            attn = self.attention(torch.cat([self.st_up(s_st), s_lt], dim=1))

        d = self.config.decoder_channels
        r4 = self.up8(attn)
        r4_part = conv_part(self.skip4[0], r4, slice(0, d))
        r4_skip = self.skip4[1](with_frame_part(feats["skip4"], r4_part))
        if "final" in ranks:
            reduce = self.final[0][0]
            reduced = conv_part(reduce, r4, slice(0, d)) + conv_part(reduce, r4_skip, slice(d, None))
            hidden = self.final[0][1:](reduced + self.st_up4(s_st))
        else:
            hidden = self.final[0](torch.cat([r4, r4_skip, self.st_up4(s_st)], dim=1))
        if with_logits:
            logits = self.final[1:](hidden)
            foreground = torch.softmax(logits, dim=1)[:, 1:]
        else:
            logits, foreground = None, self._foreground_probability(hidden)
        weight = torch.sigmoid(self.weight_out(self.weight_conv(attn).mean(dim=(2, 3), keepdim=True)))
        return StepOutput(
            logits=logits,
            foreground=foreground,
            weight=weight.view(n),
            transition=self.transition_head(attn),
            aux_logits=self.aux_head(attn),
            attn=attn,
        )

    def _foreground_probability(self, hidden: torch.Tensor) -> torch.Tensor:
        """softmax(final[1:](hidden))[:, 1:] as sigmoid(foreground logit - background logit).

        The last transposed conv is linear, so the difference of the logits is that conv with
        the difference of its class weights (half the output channels), run as the equal plain
        conv of ``transposed_conv_as_conv``.
        """
        up, shuffle = self.final[1], self.final[2]
        per_class = shuffle.upscale_factor**2
        weight = up.weight[:, per_class:] - up.weight[:, :per_class]
        bias = up.bias[per_class:] - up.bias[:per_class]
        kernel, bias, padding = transposed_conv_as_conv(up, weight, bias)
        # Both pixel shuffles in one: output channel (a2 * f + b2) * s * s + a * s + b holds final
        # pixel (f * (s * i + a) + a2, f * (s * j + b) + b2), the place of channel
        # (f * a + a2) * f * s + f * b + b2 in a pixel shuffle by f * s.
        s, f = up.stride[0], shuffle.upscale_factor
        order = [
            (a2 * f + b2) * s * s + a * s + b for a in range(s) for a2 in range(f) for b in range(s) for b2 in range(f)
        ]
        logits = F.conv2d(hidden, kernel[order], bias[order], padding=padding)
        return torch.sigmoid(F.pixel_shuffle(logits, f * s))

    def update_state(
        self,
        feats: Dict[str, torch.Tensor],
        state: TemplateState,
        weight: torch.Tensor,
        prob_fg: torch.Tensor,
        update_long_term: Optional[torch.Tensor] = None,
    ) -> TemplateState:
        """Fold the current prediction into the state.

        prob_fg: (N, 1, H, W) the objects' foreground probabilities on this frame.
        update_long_term: (N,) bool; False keeps an object's long-term template (low confidence).
        """
        heat = heatmap_at_stride(prob_fg, 8)
        hist = torch.cat([state.hist[:, 2:], heat], dim=1)
        st = self._short_term_template(feats, hist)
        embedding = self._embedding(feats, hist)
        w = weight if self.config.adaptive_update else 1.0 / state.updates
        w = w.view(-1, 1, 1)
        lt = state.lt / (1.0 + w) + embedding * (w / (1.0 + w))
        updates = state.updates + 1
        if not self.config.update_long_term:
            lt, updates = state.lt, state.updates
        elif update_long_term is not None:
            keep = ~update_long_term
            lt = torch.where(keep.view(-1, 1, 1), state.lt, lt)
            updates = torch.where(keep, state.updates, updates)
        return TemplateState(hist=hist, st=st, lt=lt, updates=updates)

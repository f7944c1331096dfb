"""The VRP encoder: a frozen semantic backbone, the feature augmenter and the prompt generator.

Attribute names are those of the official ``VRP_encoder`` (VRP-SAM: ``model/VRP_encoder.py``)
so official checkpoints, which hold the backbone too, load strictly: ``layer0`` ..
``layer4`` (the frozen backbone), ``downsample_query`` (shared 1x1 reduction of the
mid-level features), ``merge_1`` (1x1 merge of features, prototype and mask) and
``transformer_decoder`` (the :class:`PromptGenerator`).

Data flow for one support (all maps at the backbone's stride-8 grid, 64x64 for 512 input):

1. frozen: mid features = cat(layer2, layer3); support layer4 is computed from
   ``layer3 * mask``; the pseudo mask is, per query location, the max cosine similarity to
   the masked support layer4 features;
2. learnable: both mid features go through ``downsample_query``; the prototype is the
   masked average of the reduced support features; ``merge_1`` maps
   [feature, prototype tiled, 10 x mask] to ``hidden_dim`` (the pseudo mask on the query
   side);
3. the prompt generator turns the two merged maps into ``num_queries`` tokens for SAM.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from refseg_bench.methods.vrpsam.prompt_generator import PromptGenerator

BACKBONE_LAYERS = ("layer0", "layer1", "layer2", "layer3", "layer4")
MASK_SCALE = 10.0  # the mask channel enters merge_1 multiplied by 10 (official constant)
AREA_EPS = 5e-4  # added to the mask area in masked average pooling (official constant)
COSINE_EPS = 1e-7


@dataclass(frozen=True)
class BackboneChannels:
    """Output channels of ``layer2``, ``layer3`` and ``layer4`` (ResNet-50: 512, 1024, 2048)."""

    layer2: int
    layer3: int
    layer4: int

    @property
    def mid(self) -> int:
        return self.layer2 + self.layer3


@dataclass
class SupportPrompt:
    """What the learnable part computes from supports alone (cacheable under the fold's
    weights): ``prototype``, the masked average of the reduced support features, ``(B, D,
    1, 1)`` or tiled to ``(B, D, h, w)`` (an expanded view; see :meth:`VRPEncoder.support_prompt`);
    ``tokens`` ``(B, Q, D)``, the prompt generator's queries after attending to the merged
    support (:meth:`PromptGenerator.attend_support`)."""

    prototype: torch.Tensor
    tokens: torch.Tensor


@dataclass
class SupportFeatures:
    """The frozen backbone's view of supports, independent of any query (cacheable):
    ``mid``: ``(B, C2 + C3, h, w)``; ``mask``: ``(B, 1, h, w)`` float 0/1 (the annotation
    nearest-resized to the grid); ``high``: ``(B, C4, h, w)``, layer4 of ``layer3 * mask``;
    ``prompt``: the learnable part's :class:`SupportPrompt` when already computed."""

    mid: torch.Tensor
    mask: torch.Tensor
    high: torch.Tensor
    prompt: SupportPrompt | None = None
    high_norm: torch.Tensor | None = None  # location_norms(high, mask), (B, h*w)


@dataclass
class QueryFeatures:
    """The frozen backbone's view of queries, independent of any support (cacheable):
    ``mid``: ``(B, C2 + C3, h, w)``; ``high``: ``(B, C4, h, w)``, layer4; ``down``: ``mid``
    through ``downsample_query`` ``(B, D, h, w)`` when already computed."""

    mid: torch.Tensor
    high: torch.Tensor
    down: torch.Tensor | None = None
    high_norm: torch.Tensor | None = None  # location_norms(high), (B, h*w)


@dataclass
class FrozenFeatures:
    """Backbone outputs for a batch of (query, support) pairs, computed without gradient.

    ``query_mid``/``support_mid``: ``(B, C2 + C3, h, w)``; ``mask``: ``(B, 1, h, w)`` float 0/1
    (the support annotation nearest-resized to the grid); ``pseudo``: ``(B, 1, h, w)`` in
    [-1, 1] (max cosine similarity, not min-max normalised).
    """

    query_mid: torch.Tensor
    support_mid: torch.Tensor
    mask: torch.Tensor
    pseudo: torch.Tensor
    query_down: torch.Tensor | None = None  # QueryFeatures.down
    support_prompt: SupportPrompt | None = None  # SupportFeatures.prompt


def masked_average(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, C, h, w)`` features, ``(B, 1, h, w)`` mask -> ``(B, C, 1, 1)`` prototype:
    sum(features * mask) / (sum(mask) + 5e-4)."""
    area = mask.sum(dim=(2, 3), keepdim=True) + AREA_EPS
    return (features * mask).sum(dim=(2, 3), keepdim=True) / area


# Fewer rows than this take another BLAS path (matrix-vector) whose sums differ in their
# last bits from the all-pairs product's; measured on one thread: 1-3 rows differ, 4 and
# more match.
MIN_GEMM_ROWS = 4


def _masked(support_high: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The pseudo mask's support side: ``support_high`` ``(B, C, h, w)`` times ``mask``
    ``(B, 1, h', w')`` bilinearly resized to ``h x w``, as ``(B, C, h*w)``, and that mask
    ``(B, h*w)``."""
    mask = F.interpolate(mask, size=support_high.shape[-2:], mode="bilinear", align_corners=True)
    return (support_high * mask).flatten(2), mask.flatten(1)


def location_norms(features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """L2 norms over channels of ``features`` ``(B, C, h, w)`` (a support's: times its
    ``mask`` as in :func:`pseudo_mask`), ``(B, h*w)``, reduced on the layout the official
    code reduces (so the same bits): what :func:`pseudo_mask` takes when cached."""
    x = _masked(features, mask)[0] if mask is not None else features.flatten(2)
    return x.norm(dim=1)


def pseudo_mask(support_high: torch.Tensor, query_high: torch.Tensor, mask: torch.Tensor,
                support_norm: torch.Tensor | None = None,
                query_norm: torch.Tensor | None = None) -> torch.Tensor:
    """Per query location, the max cosine similarity to any masked support location.

    ``support_high``/``query_high``: ``(B, C, h, w)`` layer4 features; ``mask``: ``(B, 1, h', w')``
    (bilinearly resized to ``h x w`` first); ``support_norm``/``query_norm``: their
    :func:`location_norms` ``(B, h*w)`` when already computed. Returns ``(B, 1, h, w)``.

    The official code multiplies every support location with every query location. A
    location the mask does not reach is a zero vector there, whose similarity is exactly
    0 (0 / (0 + eps)); so only the reached locations are multiplied (a support's
    foreground, typically a fifth to a third of it), with a few unreached ones added when
    fewer than :data:`MIN_GEMM_ROWS` are reached (their 0 is in the official max too).
    Norms are taken over every location on the official layout (a reduction's order
    depends on it) and products row by row, so on one thread the result is the all-pairs
    one bit for bit (tests/methods/test_vrpsam_encoder.py); with more threads BLAS splits
    a product by its shape and the last bits may differ (about 1e-7), as they do for any
    feature computed in another batch.
    """
    b, _, h, w = query_high.shape
    s, reached = _masked(support_high, mask)  # (B, C, HWs), (B, HWs)
    q = query_high.flatten(2)  # (B, C, HWq)
    if s.shape[-1] < MIN_GEMM_ROWS:  # too few locations to choose from: all pairs
        st = s.transpose(1, 2)  # (B, HWs, C)
        norms = torch.bmm(st.norm(dim=2, keepdim=True), q.norm(dim=1, keepdim=True))
        similarity = torch.bmm(st, q) / (norms + COSINE_EPS)
        return similarity.max(dim=1).values.reshape(b, 1, h, w)
    q_norm = (query_norm if query_norm is not None else q.norm(dim=1))[:, None]  # (B, 1, HWq)
    s_norm = support_norm if support_norm is not None else s.norm(dim=1)  # (B, HWs)
    reached = reached != 0
    best = q.new_zeros(b, q.shape[-1])
    for i in range(b):
        rows = reached[i].nonzero().squeeze(1)
        if rows.numel() == 0:
            continue  # every similarity is 0
        if rows.numel() < MIN_GEMM_ROWS:
            zeros = (~reached[i]).nonzero().squeeze(1)[:MIN_GEMM_ROWS - rows.numel()]
            rows = torch.cat([rows, zeros])
        norms = s_norm[i, rows, None] @ q_norm[i]  # (n, HWq)
        picked = s[i].t().index_select(0, rows)  # (n, C), contiguous
        best[i] = ((picked @ q[i]) / (norms + COSINE_EPS)).max(dim=0).values
        if rows.numel() < s.shape[-1]:
            best[i] = best[i].clamp(min=0)
    return best.reshape(b, 1, h, w)


class VRPEncoder(nn.Module):
    """Visual reference prompt encoder over a frozen backbone.

    ``backbone`` must expose ``layer0`` .. ``layer4`` (ResNet-50 v2, VGG-16 or a tiny
    variant from ``refseg_bench.models.backbones``); they are adopted as attributes of this
    module (hence the official ``layer0.*`` keys) and frozen. ``hidden_dim`` must equal SAM's
    prompt embedding width (256 for official SAM).
    """

    def __init__(self, backbone: nn.Module, channels: BackboneChannels, *, hidden_dim: int = 256,
                 num_queries: int = 50, heads: int = 4, dropout: float = 0.5) -> None:
        super().__init__()
        for name in BACKBONE_LAYERS:
            layer = getattr(backbone, name, None)
            if layer is None:
                raise ValueError(f"backbone {type(backbone).__name__} has no {name}; expected "
                                 f"modules {', '.join(BACKBONE_LAYERS)}")
            setattr(self, name, layer)
        self.channels = channels
        self.hidden_dim = hidden_dim
        self.num_queries = num_queries
        self.downsample_query = nn.Sequential(
            nn.Conv2d(channels.mid, hidden_dim, kernel_size=1, bias=False),
            nn.ReLU(inplace=True),
            nn.Dropout2d(p=dropout),
        )
        self.merge_1 = nn.Sequential(
            nn.Conv2d(2 * hidden_dim + 1, hidden_dim, kernel_size=1, bias=False),
            nn.ReLU(inplace=True),
        )
        self.transformer_decoder = PromptGenerator(hidden_dim, num_queries, heads)
        for p in self.backbone_parameters():
            p.requires_grad_(False)
        self.train(False)

    # --- parameters and modes ------------------------------------------------------------
    def backbone_parameters(self):
        for name in BACKBONE_LAYERS:
            yield from getattr(self, name).parameters()

    def learnable_modules(self) -> dict[str, nn.Module]:
        """The trained parts, by attribute name (the optimiser's three parameter groups)."""
        return {"transformer_decoder": self.transformer_decoder,
                "downsample_query": self.downsample_query, "merge_1": self.merge_1}

    def learnable_parameters(self) -> list[nn.Parameter]:
        return [p for m in self.learnable_modules().values() for p in m.parameters()]

    def train(self, mode: bool = True) -> VRPEncoder:
        """Training mode for the learnable parts only: the backbone stays in eval mode
        (frozen batch-norm statistics), as the official ``train_mode``."""
        super().train(mode)
        for name in BACKBONE_LAYERS:
            getattr(self, name).eval()
        return self

    # --- forward ------------------------------------------------------------------------
    @torch.no_grad()
    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` ImageNet-normalised images -> ``(B, C2 + C3, h, w)``: layer2 (on
        layer3's grid) and layer3, the part of the backbone a query and a support share."""
        s = self._stages(images, stop=3)
        return self._mid(s[2], s[3])

    def _layer3(self, mid: torch.Tensor) -> torch.Tensor:
        return mid[:, self.channels.layer2:].contiguous()  # _mid keeps layer3 as it is

    @torch.no_grad()
    def support_from_trunk(self, mid: torch.Tensor, support_mask: torch.Tensor
                           ) -> SupportFeatures:
        """``mid``: the supports' :meth:`trunk`; ``support_mask``: ``(B, S, S)`` 0/1
        annotation raster. See :class:`SupportFeatures`."""
        layer3 = self._layer3(mid)
        mask = F.interpolate(support_mask[:, None].float(), size=layer3.shape[-2:],
                             mode="nearest")
        return SupportFeatures(mid, mask, self.layer4(layer3 * mask))

    @torch.no_grad()
    def query_high(self, mid: torch.Tensor) -> torch.Tensor:
        """layer4 of the queries from their :meth:`trunk` ``mid``: ``(B, C4, h, w)``."""
        return self.layer4(self._layer3(mid))

    def support_features(self, support: torch.Tensor, support_mask: torch.Tensor
                         ) -> SupportFeatures:
        """``support``: ``(B, 3, S, S)`` ImageNet-normalised images; ``support_mask``:
        ``(B, S, S)`` 0/1 annotation raster. See :class:`SupportFeatures`."""
        return self.support_from_trunk(self.trunk(support), support_mask)

    def query_features(self, query: torch.Tensor) -> QueryFeatures:
        """``query``: ``(B, 3, S, S)`` ImageNet-normalised images. See :class:`QueryFeatures`."""
        mid = self.trunk(query)
        return QueryFeatures(mid, self.query_high(mid))

    @torch.no_grad()
    def frozen_features(self, query: torch.Tensor, support: torch.Tensor,
                        support_mask: torch.Tensor, query_feats: QueryFeatures | None = None,
                        support_feats: SupportFeatures | None = None) -> FrozenFeatures:
        """``query``/``support``: ``(B, 3, S, S)`` ImageNet-normalised images;
        ``support_mask``: ``(B, S, S)`` 0/1 annotation raster. See :class:`FrozenFeatures`.
        ``query_feats``/``support_feats``: the query's / supports' features when already
        computed (k-shot, caches)."""
        q = query_feats if query_feats is not None else self.query_features(query)
        s = support_feats if support_feats is not None else \
            self.support_features(support, support_mask)
        grid = s.mid.shape[-2:]
        return FrozenFeatures(
            query_mid=q.mid,
            support_mid=s.mid,
            mask=s.mask,
            pseudo=self._to_grid(pseudo_mask(s.high, q.high, s.mask, s.high_norm,
                                             q.high_norm), grid),
            query_down=q.down,
            support_prompt=s.prompt,
        )

    def _stages(self, x: torch.Tensor, stop: int = 4) -> list[torch.Tensor]:
        outs = []
        for name in BACKBONE_LAYERS[: stop + 1]:
            x = getattr(self, name)(x)
            outs.append(x)
        return outs

    @staticmethod
    def _to_grid(x: torch.Tensor, grid) -> torch.Tensor:
        # ResNet v2 keeps layer2..4 at one stride; VGG's layer2 is twice as large.
        if tuple(x.shape[-2:]) == tuple(grid):
            return x
        return F.interpolate(x, size=grid, mode="bilinear", align_corners=True)

    def _mid(self, f2: torch.Tensor, f3: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._to_grid(f2, f3.shape[-2:]), f3], dim=1)

    def prompts_from_features(self, feats: FrozenFeatures) -> torch.Tensor:
        """The learnable part: ``(B, num_queries, hidden_dim)`` prompt tokens. The parts
        that see one side only (:meth:`support_prompt`, ``downsample_query`` of the query)
        are taken from ``feats`` when it carries them."""
        query = feats.query_down if feats.query_down is not None else \
            self.downsample_query(feats.query_mid)
        support = feats.support_prompt if feats.support_prompt is not None else \
            self.support_prompt(feats.support_mid, feats.mask)
        prototype = support.prototype.expand_as(query)
        query = self.merge_1(torch.cat([query, prototype, feats.pseudo * MASK_SCALE], dim=1))
        return self.transformer_decoder.attend_query(support.tokens, query)

    def support_prompt(self, support_mid: torch.Tensor, mask: torch.Tensor) -> SupportPrompt:
        """The learnable part on the support side: ``support_mid`` ``(B, C2 + C3, h, w)``,
        ``mask`` ``(B, 1, h, w)`` -> :class:`SupportPrompt`."""
        support = self.downsample_query(support_mid)
        # One tiled view for both merges, as the official graph: its gradient is the sum
        # of the two uses, reduced once (two expansions would reduce twice, other bits).
        prototype = masked_average(support, mask).expand_as(support)
        merged = self.merge_1(torch.cat([support, prototype, mask * MASK_SCALE], dim=1))
        return SupportPrompt(prototype, self.transformer_decoder.attend_support(merged))

    def forward(self, query: torch.Tensor, support: torch.Tensor, support_mask: torch.Tensor
                ) -> torch.Tensor:
        """One support per query: ``(B, 3, S, S)``, ``(B, 3, S, S)``, ``(B, S, S)`` ->
        ``(B, num_queries, hidden_dim)``. k-shot: call once per support and concatenate the
        tokens (``encode_shots``)."""
        return self.prompts_from_features(self.frozen_features(query, support, support_mask))

    def encode_shots(self, query: torch.Tensor, supports: torch.Tensor, masks: torch.Tensor,
                     support_feats: list[SupportFeatures] | None = None,
                     query_feats: QueryFeatures | None = None) -> torch.Tensor:
        """k-shot: ``supports`` ``(B, k, 3, S, S)``, ``masks`` ``(B, k, S, S)`` ->
        ``(B, k * num_queries, hidden_dim)``, the prompt sets of each support concatenated
        in support order (the official ``predict_mask_nshot``). ``support_feats``: per
        shot, the supports' features; ``query_feats``: the queries'; each when already
        computed."""
        q = query_feats if query_feats is not None else self.query_features(query)
        sets = [self.prompts_from_features(  # the query's features once for all k supports
                    self.frozen_features(query, supports[:, i], masks[:, i], query_feats=q,
                                         support_feats=support_feats[i]
                                         if support_feats is not None else None))
                for i in range(supports.shape[1])]
        return torch.cat(sets, dim=1)

"""Small encoders and the dual encoder (FNE, Li et al., ACM MM 2023, uses a dual encoder
with L2-normalised outputs compared by inner product)."""

from fnlab.models.dual import (
    DualEncoder,
    build_dual_encoder,
    default_head,
    dual_encoder_from_spec,
    encode_side,
    to_tensor,
)
from fnlab.models.encoders import TEXT_KINDS, FeatureMLP, PixelCNN, TokenEncoder
from fnlab.models.heads import HEADS, LinearHead, ResidualHead, procrustes_map

__all__ = [
    "HEADS", "TEXT_KINDS", "DualEncoder", "FeatureMLP", "LinearHead", "PixelCNN", "ResidualHead", "TokenEncoder",
    "build_dual_encoder", "default_head", "dual_encoder_from_spec", "encode_side", "procrustes_map", "to_tensor",
]

"""Video tokenizers: causal 3D conv (``causal3d_*``, Cosmos-DV / MAGVIT-v2 style), joint image +
video (an image is a clip of one frame), windowed long clips, tiled large frames, and
inflation from a 2D image VQGAN.

    tok = mmtok.create_tokenizer("causal3d_tiny")
    codes = tok.encode(x)               # x: (B, 3, 1 + 4n, 32, 32) in [-1, 1] -> (B, 1 + n, 8, 8)
    y = tok.decode(codes)               # (B, 3, 1 + 4n, 32, 32)
    img_codes = tok.encode_image(img)   # (B, 3, 32, 32) -> (B, 8, 8) == encode(img[:, :, None])[:, 0]
"""

from mmtok.video import causal3d  # noqa: F401  (registers the variants)
from mmtok.video.causal3d import Causal3dConfig, Causal3dTokenizer
from mmtok.video.common import VideoTokenizer, check_video, latent_frames, pad_frames, padded_length, pixel_frames
from mmtok.video.inflate import config_from_image, inflate_from_image
from mmtok.video.long import (
    StreamDecoder,
    StreamEncoder,
    blend_weights,
    decode_long,
    decode_tiled,
    encode_long,
    encode_tiled,
    plan_spans,
    tiling_report,
    window_report,
)

__all__ = [
    "VideoTokenizer",
    "Causal3dConfig",
    "Causal3dTokenizer",
    "check_video",
    "pad_frames",
    "padded_length",
    "latent_frames",
    "pixel_frames",
    "StreamEncoder",
    "StreamDecoder",
    "encode_long",
    "decode_long",
    "encode_tiled",
    "decode_tiled",
    "tiling_report",
    "window_report",
    "plan_spans",
    "blend_weights",
    "inflate_from_image",
    "config_from_image",
]

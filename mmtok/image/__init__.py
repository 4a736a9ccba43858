"""Image tokenizers: 1D TiTok / FlexTok-style (``titok_*``, ``flextok_*``) and 2D VQGAN-style (``vqgan_*``).

    tok = mmtok.create_tokenizer("flextok_t32_fsq")
    codes = tok.encode(x)              # x: (B, 3, 32, 32) in [-1, 1] -> (B, 32) int64
    x_hat = tok.decode(codes[:, :8])   # any prefix decodes
"""

from mmtok.image import variants_1d  # noqa: F401  (registers the 1D variants)
from mmtok.image import flow_decoder  # noqa: F401  (registers the *_flow variants)
from mmtok.image.common import ImageTokenizer
from mmtok.image.flow_decoder import FlowTiTokConfig, FlowTiTokTokenizer
from mmtok.image.titok import TiTokConfig, TiTokTokenizer
from mmtok.image.vqgan import VQGANConfig, VQGANTokenizer

__all__ = ["FlowTiTokConfig", "FlowTiTokTokenizer", "ImageTokenizer", "TiTokConfig", "TiTokTokenizer", "VQGANConfig", "VQGANTokenizer"]

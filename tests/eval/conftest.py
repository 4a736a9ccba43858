from dataclasses import dataclass

import pytest
import torch
from torch import nn

from mmtok.tokenizer import Tokenizer, check_range


@dataclass
class PixelConfig:
    image_size: int = 32


class PixelTokenizer(Tokenizer):
    """Lossless reference 'tokenizer': one token per uint8 sub-pixel, (B, 3*H*W) codes in [0, 256).

    Nested: a prefix of k tokens decodes the first k sub-pixels and fills the rest with 128,
    so quality grows with k and the full sequence reconstructs exactly.
    """

    config_class = PixelConfig
    modality = "image"

    def __init__(self, config: PixelConfig) -> None:
        super().__init__(config)
        self.anchor = nn.Parameter(torch.zeros(()))

    @property
    def token_shape(self) -> tuple[int, ...]:
        return (3 * self.config.image_size**2,)

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (256,)

    @property
    def is_nested(self) -> bool:
        return True

    def preprocessing(self) -> dict:
        return {"resolution": self.config.image_size}

    def check_input(self, x):
        s = self.config.image_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, s, s):
            raise ValueError(f"PixelTokenizer encodes (B, 3, {s}, {s}) images, got {tuple(x.shape)}")
        check_range(x)

    def encode(self, x):
        return ((x.clamp(-1, 1) + 1) * 127.5).round().long().flatten(1)

    def decode(self, codes):
        b, k = codes.shape
        full = torch.full((b, self.num_tokens), 128, dtype=torch.long, device=codes.device)
        full[:, :k] = codes
        s = self.config.image_size
        return full.view(b, 3, s, s).float() / 127.5 - 1


@pytest.fixture
def pixel_tokenizer():
    return PixelTokenizer(PixelConfig(image_size=32))

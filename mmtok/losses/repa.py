"""REPA / VFM alignment: a model's patch features against a frozen vision encoder's.

    repa = REPALoss("vit_small_patch14_dinov2", "weights/dinov2_vits14.pth", layer=-1)
    loss = repa(projected, x)    # projected: (B, N, D) model features through a projector MLP

The target encoder is any timm ViT built without pretrained weights and filled from a local
file read as plain tensors (:func:`mmtok.weights.load_state_dict_file`: safetensors or a
``torch.save`` state dict; never unpickled code, never downloaded). Its patch features at
block ``layer`` are resized to the model's patch grid; the loss is ``1 - cosine`` averaged
over patches. The encoder is frozen and in eval mode.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmtok.weights import WeightsError, load_state_dict_file


def _build(name: str, image_size: int | None) -> nn.Module:
    import timm

    kwargs = {"pretrained": False, "num_classes": 0}
    if image_size is not None:
        kwargs["img_size"] = int(image_size)
    try:
        return timm.create_model(name, **kwargs)
    except RuntimeError as e:  # timm: unknown model name
        raise ValueError(f"repa.encoder: {e}") from None


def encoder_feature_dim(name: str, image_size: int | None = None) -> int:
    """Feature width of the timm model ``name`` (built on the meta device, no weights)."""
    with torch.device("meta"):
        return int(_build(name, image_size).num_features)


class REPALoss(nn.Module):
    """``1 - cos(projected, encoder features)`` averaged over patches and the batch.

    Args:
        encoder: timm model name (a ViT with ``forward_intermediates``: DINOv2, SigLIP, ...).
        weights: local weights file of that model.
        layer: encoder block whose output is the target (-1: the last).
        image_size: the encoder's input size (default: the model's own).
    """

    def __init__(self, encoder: str, weights: str | Path, layer: int = -1, image_size: int | None = None) -> None:
        super().__init__()
        path = Path(str(weights)).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"REPA encoder weights not found: {path}. mmtok never downloads weights at run time; place the "
                f"{encoder} weights (a safetensors file or a torch.save'd state dict) at {path}, or set repa.weights "
                "to where they are."
            )
        self.net = _build(encoder, image_size)
        state = load_state_dict_file(path, f"REPA encoder weights ({encoder})")
        missing, unexpected = self.net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("head")]
        if missing:
            raise WeightsError(f"{path} does not fit timm model {encoder}: missing {missing[:5]}"
                               + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""))
        self.layer = int(layer)
        self.encoder_name = encoder
        cfg = getattr(self.net, "pretrained_cfg", {}) or {}
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1), persistent=False)
        size = self.net.patch_embed.img_size
        self.input_size = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "REPALoss":  # always frozen
        return super().train(False)

    @torch.no_grad()
    def target(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        """x: (B, 3, H, W) in [-1, 1] -> (B, gh*gw, D) encoder patch features on ``grid``."""
        if next(self.net.parameters()).device != x.device:
            self.to(x.device)
        inp = F.interpolate((x.float() + 1) / 2, size=self.input_size, mode="bicubic", align_corners=False)
        inp = (inp - self.mean) / self.std
        depth = len(self.net.blocks)
        idx = self.layer % depth
        feats = self.net.forward_intermediates(inp, indices=[idx], intermediates_only=True)[0]  # (B, D, h, w)
        if tuple(feats.shape[-2:]) != tuple(grid):
            feats = F.interpolate(feats, size=grid, mode="bilinear", align_corners=False)
        return feats.flatten(2).transpose(1, 2)

    def forward(self, projected: Tensor, x: Tensor) -> Tensor:
        """projected: (B, N, D) model features (N a square patch count or matching x's aspect), x: images."""
        b, n, _ = projected.shape
        h, w = x.shape[-2:]
        gh = round(math.sqrt(n * h / w))
        if gh < 1 or n % gh:
            raise ValueError(f"cannot lay {n} patch features on a grid with the aspect of a {h}x{w} image")
        tgt = self.target(x, (gh, n // gh))
        if tgt.shape[-1] != projected.shape[-1]:
            raise ValueError(f"projected features have {projected.shape[-1]} channels, {self.encoder_name} has {tgt.shape[-1]}")
        return (1 - F.cosine_similarity(projected.float(), tgt.float(), dim=-1)).mean()

"""LPIPS perceptual distance with offline-only trunk weights.

The ``lpips`` package ships its linear-layer weights in the wheel; the VGG / AlexNet /
SqueezeNet trunk weights are torchvision's ImageNet checkpoints, which are never
downloaded here: they load from an explicit path or from the torch hub cache
(``$TORCH_HOME/hub/checkpoints``), and a missing file raises an error saying which file to
put where. Trunk files are read as plain tensors (:func:`mmtok.weights.load_state_dict_file`),
and a file with torchvision's name must match the sha256 prefix in that name.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from mmtok.weights import WeightsError, hub_cache_path, load_state_dict_file, resolve_weights_file, verify_known_file

# torchvision checkpoint file names of the LPIPS trunks.
TRUNK_FILES = {
    "vgg": ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
    "alex": ("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    "squeeze": ("squeezenet1_1-b8a52dc0.pth", "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth"),
}


def trunk_cache_path(net: str) -> Path:
    """Where torchvision would cache the trunk checkpoint of ``net``."""
    return hub_cache_path(TRUNK_FILES[net][0])


def resolve_trunk_weights(net: str, weights: str | Path) -> Path | None:
    """``"random"`` -> None; ``"auto"`` -> the torch-cache file (must exist); a path -> that file."""
    if net not in TRUNK_FILES:
        raise ValueError(f"LPIPS net must be one of {sorted(TRUNK_FILES)}, got {net!r}")
    if weights == "random":
        return None
    name, url = TRUNK_FILES[net]
    return resolve_weights_file(weights, name, f"LPIPS {net} trunk weights", url, "weights=...",
                                "use weights='random' for tests")


class LPIPS(nn.Module):
    """Learned perceptual distance (Zhang et al. 2018) on images in [-1, 1].

    Args:
        net: trunk, "vgg" (the usual training loss), "alex" or "squeeze".
        weights: "auto" (torch hub cache, never downloaded), "random" (random trunk for
            tests), or a path to the torchvision trunk checkpoint (or its folder).

    ``forward(x, y)`` -> (B,) distances. All parameters are frozen and the module stays in
    eval mode (its dropout never switches on).
    """

    def __init__(self, net: str = "vgg", weights: str | Path = "auto") -> None:
        super().__init__()
        import lpips

        trunk_path = resolve_trunk_weights(net, weights)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # pnet_rand=True: build the trunk without torchvision's download; the linear
            # layers still come from the file shipped in the lpips wheel.
            self.model = lpips.LPIPS(pretrained=True, net=net, pnet_rand=True, verbose=False)
        self.trunk_verified = False
        if trunk_path is not None:
            self._load_trunk(trunk_path)
        self.net, self.weights = net, str(weights)
        self.requires_grad_(False)
        self.eval()

    def _load_trunk(self, path: Path) -> None:
        name, url = TRUNK_FILES[self.model.pnet_type]
        self.trunk_verified = verify_known_file(path, name, url)
        state = load_state_dict_file(path, f"LPIPS {self.model.pnet_type} trunk weights")
        pnet = self.model.net
        mapped = {}
        for key in pnet.state_dict():
            _, idx, leaf = key.split(".", 2)  # "slice2.5.weight" -> features.5.weight
            src = f"features.{idx}.{leaf}"
            if src not in state:
                raise WeightsError(f"{path} does not look like the torchvision {self.model.pnet_type} checkpoint (no {src})")
            mapped[key] = state[src]
        pnet.load_state_dict(mapped)

    def train(self, mode: bool = True) -> "LPIPS":
        return super().train(False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """x, y: (B, 3, H, W) in [-1, 1] -> (B,) distances (differentiable w.r.t. the inputs)."""
        if x.shape != y.shape:
            raise ValueError(f"LPIPS inputs must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS expects (B, 3, H, W) images in [-1, 1], got shape {tuple(x.shape)}")
        if min(x.shape[-2:]) < 16:
            raise ValueError(f"LPIPS needs images of at least 16x16, got {tuple(x.shape[-2:])}")
        dtype = next(self.model.parameters()).dtype
        with torch.autocast(device_type=x.device.type, enabled=False):
            d = self.model(x.to(dtype), y.to(dtype), normalize=False)
        return d.reshape(x.shape[0])

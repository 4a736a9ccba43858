"""What every image tokenizer shares: the ``ImageTokenizer`` base (input checks,
preprocessing, bits per image) and config helpers."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from mmtok.tokenizer import Tokenizer, check_range



def check_image(x: Tensor, in_channels: int, multiple: int, name: str = "images") -> tuple[int, int]:
    """Validate a (B, C, H, W) float32 batch in [-1, 1] whose H, W are multiples of ``multiple``.

    Returns (H, W). Raises ``TypeError`` / ``ValueError`` with a message saying what to fix.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, {in_channels}, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        hint = " (add a batch axis with x[None])" if x.ndim == 3 else ""
        raise ValueError(f"{name} must have shape (B, {in_channels}, H, W), got {tuple(x.shape)}{hint}")
    if x.shape[1] != in_channels:
        hint = " (channel-last input? use x.permute(0, 3, 1, 2))" if x.shape[-1] == in_channels else ""
        raise ValueError(f"{name} must have {in_channels} channels, got shape {tuple(x.shape)}{hint}")
    h, w = int(x.shape[2]), int(x.shape[3])
    if h % multiple or w % multiple:
        raise ValueError(
            f"{name} height and width must be multiples of {multiple}, got {h}x{w}; "
            f"resize or crop to e.g. {max(multiple, h // multiple * multiple)}x{max(multiple, w // multiple * multiple)}"
        )
    check_range(x, name)
    return h, w


def parse_image_size(size: Any, multiple: int, name: str = "image_size") -> tuple[int, int]:
    """int or (H, W) -> (H, W), checking both are positive multiples of ``multiple``."""
    if isinstance(size, int):
        hw = (size, size)
    elif isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(v, int) for v in size):
        hw = (int(size[0]), int(size[1]))
    else:
        raise TypeError(f"{name} must be an int or an (H, W) pair of ints, got {size!r}")
    if min(hw) <= 0 or hw[0] % multiple or hw[1] % multiple:
        raise ValueError(f"{name} {hw} must be positive multiples of {multiple}")
    return hw


class ImageTokenizer(Tokenizer):
    """Base of the image tokenizers: (B, C, H, W) float32 in [-1, 1], H and W multiples of
    ``size_multiple`` (patch size or downsampling factor). Subclasses set ``size_multiple``
    and implement encode / decode / forward / ``token_shape`` / ``last_layer_weight``;
    their config has ``image_size`` (square training resolution) and ``in_channels``."""

    modality: ClassVar[str] = "image"

    @property
    def size_multiple(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_input(self, x: Tensor) -> None:
        """Raise ``TypeError`` / ``ValueError`` (see ``Tokenizer.check_input``) unless ``x`` is a
        (B, C, H, W) float32 batch in [-1, 1] with H, W multiples of ``size_multiple``."""
        check_image(x, self.config.in_channels, self.size_multiple)

    def preprocessing(self) -> dict[str, Any]:
        """``{"resolution": image_size}``: the square training size datasets deliver."""
        return {"resolution": int(self.config.image_size)}

    @property
    def bits_per_image(self) -> float:
        """Alias of ``bits_per_item``: bits of one image's codes at the training size."""
        return self.bits_per_item


"""The image metric suite and its parts.

- ``quality``: PSNR / SSIM per image on uint8 pixels
- ``inception``: the Inception-v3 FID network (torch-fidelity's, TF-compatible resize)
- ``rfid``: streaming rFID per prefix length, reference statistics (external, cached, computed)
- ``perceptual``: LPIPS (VGG, ``mmtok.losses.LPIPS``, imported only when measured)
- ``samples``: ``reconstructions.npz`` (ADM format) and ``recon_grid.png``
- ``suite``: ``ImageSuite``, registered for ``modality == "image"`` in ``mmtok.metrics.suite``
"""

from mmtok.metrics.image.quality import PSNR_MAX_DB, psnr_per_image, ssim_per_image

__all__ = ["PSNR_MAX_DB", "psnr_per_image", "ssim_per_image"]

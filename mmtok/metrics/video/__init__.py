"""The video metric suite and its parts.

- ``i3d``: the Inception-I3D FVD network (400-d logits; pytorch-i3d state-dict layout, local weights only)
- ``rfvd``: streaming rFVD per rung of the rate ladder against this run's original clips
- ``samples``: MP4 / GIF side-by-side clips, PNG frame strips, ``per_frame.png``
- ``suite``: ``VideoSuite``, registered for ``modality == "video"`` in ``mmtok.metrics.suite``

PSNR / SSIM / LPIPS are the image metrics (``mmtok.metrics.image``) applied per frame.
Nothing heavy is imported here.
"""

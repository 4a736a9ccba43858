"""The Inception-v3 FID network: ``mmtok.metrics.image.inception`` under its former import path."""

import sys

from mmtok.metrics.image import inception as _inception

sys.modules[__name__] = _inception

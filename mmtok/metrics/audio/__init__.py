"""The audio metric suite and its parts.

- ``quality``: SI-SDR, mel / STFT distance (``mmtok.losses.spectral``), PESQ-WB, STOI per clip
- ``samples``: WAV pairs and log-mel spectrogram PNGs of the first clips
- ``suite``: ``AudioSuite``, registered for ``modality == "audio"`` in ``mmtok.metrics.suite``
"""

from mmtok.metrics.audio.quality import mel_distance, pesq_wb, si_sdr, stft_distance, stoi

__all__ = ["mel_distance", "pesq_wb", "si_sdr", "stft_distance", "stoi"]

"""Audio codecs: RVQ conv codecs (``rvq_codec_*``, DAC / EnCodec-style) and single-codebook
iSTFT codecs (``istft_codec_*``, WavTokenizer-style), streaming for causal models and
windowed encode / decode of long files.

    tok = mmtok.create_tokenizer("rvq_codec_tiny")
    codes = tok.encode(x)              # x: (B, 1, S) in [-1, 1] at 16 kHz -> (B, ceil(S / 160), 4)
    y = tok.decode(codes[..., :2])     # fewer levels = lower bitrate; (B, 1, T * 160)
"""

from mmtok.audio import encodec_codec, istft_codec, rvq_codec  # noqa: F401  (registers the variants)
from mmtok.audio.common import AudioTokenizer, check_audio, resample, to_channels
from mmtok.audio.encodec_codec import EncodecStyleCodec, EncodecStyleCodecConfig
from mmtok.audio.istft_codec import ISTFTCodec, ISTFTCodecConfig, ISTFTDecoder
from mmtok.audio.long import decode_long, default_batch_size, encode_long, plan_windows, seam_report
from mmtok.audio.rvq_codec import RVQCodec, RVQCodecConfig
from mmtok.audio.streaming import StreamDecoder, StreamEncoder

__all__ = [
    "AudioTokenizer",
    "RVQCodec",
    "RVQCodecConfig",
    "EncodecStyleCodec",
    "EncodecStyleCodecConfig",
    "ISTFTCodec",
    "ISTFTCodecConfig",
    "ISTFTDecoder",
    "StreamEncoder",
    "StreamDecoder",
    "default_batch_size",
    "encode_long",
    "decode_long",
    "seam_report",
    "plan_windows",
    "to_channels",
    "resample",
    "check_audio",
]

"""Reference autoregressive generators over token shards.

    from mmtok.ar import ar_tiny, sample
    model = ar_tiny(vocab_size=4096, max_len=256, num_classes=10)
    loss = model.loss(ids, labels)                        # ids (B, 256), labels (B,)
    codes = sample(model, 8, 256, labels=3, cfg_scale=2.0, top_k=100)

``TinyGPT`` is the minimal GPT used to check that shards train end to end; ``ARGenerator``
is the Llama-style class-conditional generator (RoPE, RMSNorm, SwiGLU, KV cache, CFG).
"""

from mmtok.ar.gpt import TinyGPT
from mmtok.ar.model import AR_SIZES, ARConfig, ARGenerator, KVCache, ar_b, ar_s, ar_tiny
from mmtok.ar.sampling import draw, filter_logits, sample

__all__ = ["AR_SIZES", "ARConfig", "ARGenerator", "KVCache", "TinyGPT", "ar_b", "ar_s", "ar_tiny",
           "draw", "filter_logits", "sample"]

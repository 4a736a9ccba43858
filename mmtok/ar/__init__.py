"""Reference autoregressive generator over token shards (the seed of mmtok's AR models).

    from mmtok.ar import TinyGPT
    model = TinyGPT(vocab_size=ds.vocab_size, max_len=ds.seq_len)
    loss = model.loss(batch["input_ids"])
"""

from mmtok.ar.gpt import TinyGPT

__all__ = ["TinyGPT"]

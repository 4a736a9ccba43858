"""mmtok: discrete tokenizers for images, video and audio.

Public entry points (see README):

    tok = mmtok.create_tokenizer("titok_s128_fsq")   # fresh weights from the registry
    tok = mmtok.load_tokenizer("runs/x/final")       # local directory or hub id
    mmtok.list_tokenizers()
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "create_tokenizer",
    "load_tokenizer",
    "list_tokenizers",
    "register_tokenizer",
    "Tokenizer",
    "TokenizerOutput",
]

_LAZY = {
    "create_tokenizer": "mmtok.registry",
    "list_tokenizers": "mmtok.registry",
    "register_tokenizer": "mmtok.registry",
    "load_tokenizer": "mmtok.checkpoint",
    "Tokenizer": "mmtok.tokenizer",
    "TokenizerOutput": "mmtok.tokenizer",
}


def __getattr__(name: str) -> Any:
    # Lazy so that `import mmtok` stays cheap and has no side effects.
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmtok' has no attribute {name!r}")

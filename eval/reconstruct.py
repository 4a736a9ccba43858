"""Evaluate a tokenizer checkpoint (same as ``mmtok eval``; the driver is ``mmtok.metrics.cli``).

    python eval/reconstruct.py runs/x/final --data synthetic:256 --inception-weights PATH
    torchrun --nproc_per_node 8 eval/reconstruct.py runs/x/final --data "/data/val-{0000..0063}.tar"
"""

import sys

from mmtok.metrics.cli import eval_main as main

if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Train a tokenizer from a YAML recipe (the loop lives in ``mmtok.training``).

    python train/tokenizer.py configs/image/titok_t32_fsq_synthetic.yaml [key.sub=value ...]
    accelerate launch --num_processes 8 train/tokenizer.py CONFIG [key=value ...]
    mmtok train CONFIG [key=value ...]                      # the same, as a console script
"""

import sys

from mmtok.training.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())

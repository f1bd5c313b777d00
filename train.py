"""Train a tagger: ``python train.py CONFIG [key=value ...] [--resume RUN_DIR]``, the same as ``ner train``.

On N processes (GPUs, or CPU processes with gloo): ``torchrun --standalone --nproc-per-node N train.py CONFIG``;
``training.batch_size`` stays the global batch (README, "Scaling out").
"""

import sys

from ner.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))

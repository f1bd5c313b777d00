"""Train a tagger: ``python train.py CONFIG [key=value ...] [--resume RUN_DIR]``, the same as ``ner train``."""

import sys

from ner.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))

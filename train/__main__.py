"""`python -m edge_sr.train ...` (also what torchrun launches): same options as `edge-sr train`."""

import sys

from edge_sr.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))

#!/usr/bin/env python
"""Training speed per task and where a step's time goes: `twnn_jax.bench` (also `twnn bench`).

Usage:  python benchmarks/bench_train.py [--quick] [--tasks sine digits] [--warmup-steps 20]
Prints one JSON document on stdout (progress goes to stderr). Needs the package installed (`pip install -e .`).
"""

import sys

from twnn_jax.bench import main

if __name__ == "__main__":
    sys.exit(main())

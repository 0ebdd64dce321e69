"""The experiments `twnn experiment` runs and the growth experiment's parts, by name.

Kept apart from `twnn_jax.experiments` so the CLI can offer the names without importing the experiments (which
pull in training and SciPy, a cost `twnn dashboard`'s start would pay).
"""

EXPERIMENTS = {
    "paper": "the TWNN paper's tables and figures",
    "surrogate": "seed 002 (soft winner-take-all surrogate, warm starts)",
    "growth": "seed 003's networks that grow",
    "longrange": "wormhole GRU vs GRU and LSTM on adding and copy",
}

GROWTH_PARTS = {
    "brackets": "seed 003's RNN on the easy and hard bracket texts",
    "wormhole": "the sine task's wormhole net growing its hidden units",
    "gru": "the gated wormhole GRU growing its units on the adding problem",
    "holes": "the wormhole model growing its number of wormholes on sine",
}

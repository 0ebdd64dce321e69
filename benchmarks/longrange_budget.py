#!/usr/bin/env python
"""How many steps does the GRU need on adding / copy at length T? The budget search of `twnn experiment longrange`.

Trains one model (default the GRU, hidden 16, batch 32, Adam lr 5e-3, seed 0) through the project's trainer and
prints, every `--every` steps, one JSON line: task, T, model, steps, wall seconds since the start (compilation
included), evaluation loss and metric (adding: MSE and the share with |error| < 0.04; copy: cross-entropy and
accuracy per recalled symbol).

    python benchmarks/longrange_budget.py --task adding --T 200 --steps 3000
    python benchmarks/longrange_budget.py --task copy --T 50 --steps 1500
"""

import argparse
import json
import time

from twnn_jax.bench import device_info
from twnn_jax.runs import evaluate_run
from twnn_jax.train import TrainConfig, live_controls, train, trainer_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("adding", "copy"), default="adding")
    parser.add_argument("--T", type=int, default=50, help="adding: sequence length; copy: delay")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--model", default="gru")
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    cfg = TrainConfig(task=args.task, model=args.model, hidden=args.hidden, seq_len=args.T, lr=args.lr,
                      batch_size=args.batch_size)
    trainer, live = trainer_for(cfg), live_controls(cfg)
    state = trainer.init(0)
    t0, done = time.perf_counter(), 0
    while done < args.steps:
        state, _ = train(trainer, args.every, state=state, live=live)
        done += args.every
        ev, _ = evaluate_run(trainer, state, live)
        print(json.dumps({"device": device_info(),
                          "task": args.task, "T": args.T, "model": args.model, "hidden": args.hidden, "steps": done,
                          "wall_s": round(time.perf_counter() - t0, 1), "eval_loss": round(ev["eval_loss"], 4),
                          "eval_metric": round(ev["eval_metric"], 3)}), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""The speed checks on a GPU, when JAX sees one: training steps per task and `fix` against its peers.

Runs, on JAX's default device when it is a GPU:
  1. `twnn_jax.bench` (= `twnn bench`, benchmarks/bench_train.py): steps/s per task and the forward /
     backward / rest split of a step, at the default sizes;
  2. benchmarks/bench_fix.py (`--quick` unless `--full`): `fix` against optimistix, jaxopt and the ideal
     loop, in a subprocess on the same device.
Writes one JSON document (`--out`, default benchmarks/gpu_results.json) and prints it; its "device" entry
(`twnn_jax.bench.device_info`) names the device that ran.

Without a GPU it says so on stderr and exits 0 without measuring (`--cpu` runs the same checks on the
CPU instead, with the same JSON, e.g. to compare a GPU machine's file with this one's).

Usage:  python benchmarks/bench_gpu.py [--full] [--cpu] [--tasks sine digits] [--out F]
Install the CUDA build of JAX first on a GPU machine: `pip install -e '.[cuda,bench]'`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def gpu_devices() -> list:
    import jax

    try:
        return jax.devices("gpu")
    except RuntimeError:  # no GPU backend in this JAX, or no device
        return []


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="every case of bench_fix.py (default: --quick)")
    ap.add_argument("--cpu", action="store_true", help="without a GPU, run the checks on the CPU anyway")
    ap.add_argument("--tasks", nargs="+", default=None, help="tasks for the training benchmark (default: all)")
    ap.add_argument("--out", default=str(HERE / "gpu_results.json"), help="where to write the JSON")
    args = ap.parse_args(argv)

    gpus = gpu_devices()
    if not gpus and not args.cpu:
        print("bench_gpu: no GPU visible to JAX (install the CUDA build: pip install -e '.[cuda,bench]'); "
              "nothing measured. --cpu runs the same checks on the CPU.", file=sys.stderr)
        return 0
    # JAX's default device is the GPU when it sees one: every computation below runs there
    from twnn_jax.bench import bench_task, device_info
    from twnn_jax.tasks import TASKS

    tasks = args.tasks or list(TASKS)
    started = time.time()
    doc = {"benchmark": "gpu", "device": device_info(), "gpu": bool(gpus),
           "date": time.strftime("%Y-%m-%d %H:%M"), "loadavg_start": os.getloadavg(), "train": [], "fix": None}
    for task in tasks:
        print(f"bench_gpu: training steps, {task} ...", file=sys.stderr, flush=True)
        doc["train"].append(bench_task(task, repeats=30 if args.full else 10,
                                       warmup_steps=20 if args.full else 5))
    print("bench_gpu: fix against its peers ...", file=sys.stderr, flush=True)
    cmd = [sys.executable, str(HERE / "bench_fix.py"), *([] if args.full else ["--quick"])]
    env = {**os.environ, "JAX_PLATFORMS": "cuda" if gpus else "cpu"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode == 0:
        doc["fix"] = json.loads(proc.stdout)
    else:
        doc["fix"] = {"error": f"bench_fix.py exited {proc.returncode}", "stderr_tail": proc.stderr[-2000:]}
    doc["seconds"] = round(time.time() - started, 1)
    doc["loadavg_end"] = os.getloadavg()
    text = json.dumps(doc, indent=2, default=float)
    print(text)
    Path(args.out).write_text(text + "\n")
    print(f"bench_gpu: wrote {args.out}", file=sys.stderr)
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

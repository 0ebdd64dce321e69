"""Checkpoints without pickle: a run's TrainState as the leaves of its pytree in an `.npz`, plus JSON.

A checkpoint directory holds
  checkpoint.npz   the TrainState leaves (params, optimizer state, step, data key) as `leaf_00000`, ...,
                   and `__meta__`, a JSON string (format, leaf count, tree structure, config)
  config.json      the TrainConfig (`TrainConfig.to_dict()`)
  history.json     optional: the per-step summaries (strict JSON, non-finite numbers as null)

Loading rebuilds the trainer from `config.json`, takes the structure of `trainer.init(seed)` as the
template and fills its leaves, checking count, shape and dtype. Every file is written to a temporary
file in the same directory and moved into place with `os.replace`: an interrupted save leaves the
previous checkpoint whole. The data RNG lives in `state.key`, so a loaded run continues bitwise as if
it had never stopped.

>>> save_checkpoint("runs/a", state, trainer.config, history)            # doctest: +SKIP
>>> config, state = load_checkpoint("runs/a")                           # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import uuid
import zipfile
from pathlib import Path

import jax
import numpy as np

from .train import TrainConfig, TrainState, build_trainer

FORMAT = 1
STATE_FILE = "checkpoint.npz"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
_META = "__meta__"


def json_safe(value):
    """`value` with every non-finite float replaced by None (and numpy scalars made plain): strict JSON."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    return value


def dumps_strict(value, **kw) -> str:
    """JSON text that any strict parser accepts (no NaN / Infinity tokens)."""
    return json.dumps(json_safe(value), allow_nan=False, **kw)


# The temporary file `write_atomic` writes before the move: `.<name>.<pid>.<8 hex digits>.tmp`.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")


def write_atomic(path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory and `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:  # ordinary permissions (umask), unlike mkstemp's 0600
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but another user's
        return True
    return True


def remove_stale_temporaries(directory, names) -> list[Path]:
    """Remove the temporary files `write_atomic` left in `directory` for the files `names` when its process
    was killed mid-write (`.checkpoint.npz.<pid>.<hex>.tmp`, ...): only files of that exact pattern, for
    those names, whose process is gone (or is this one). Returns the paths removed."""
    directory, names, removed = Path(directory), set(names), []
    if not directory.is_dir():
        return removed
    for path in directory.iterdir():
        match = _TEMPORARY.match(path.name)
        if not match or match["name"] not in names or not path.is_file():
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and _pid_alive(pid):  # a live writer's file (another process on this directory)
            continue
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


def _leaf_array(leaf) -> np.ndarray:
    if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    return np.asarray(jax.device_get(leaf))


def save_checkpoint(directory, state: TrainState, config: TrainConfig, history=None) -> Path:
    """Write `state` and `config` (and `history`, a list of per-step dicts, when given) to `directory`."""
    directory = Path(directory)
    leaves, treedef = jax.tree.flatten(state)
    arrays = {f"leaf_{i:05d}": _leaf_array(leaf) for i, leaf in enumerate(leaves)}
    meta = {"format": FORMAT, "n_leaves": len(leaves), "treedef": str(treedef), "config": config.to_dict()}
    arrays[_META] = np.array(dumps_strict(meta))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(directory / STATE_FILE, buffer.getvalue())
    write_atomic(directory / CONFIG_FILE, (dumps_strict(config.to_dict(), indent=2) + "\n").encode())
    if history is not None:
        write_atomic(directory / HISTORY_FILE, (dumps_strict(list(history)) + "\n").encode())
    return directory


def load_config(directory) -> TrainConfig:
    """The TrainConfig stored in `directory/config.json`; ValueError naming the file when unreadable."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (not a checkpoint directory?)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of config settings, got {type(data).__name__}")
    try:
        return TrainConfig.from_dict(data)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from err


def load_history(directory) -> list[dict] | None:
    """The per-step summaries saved with the checkpoint, or None when none were saved."""
    path = Path(directory) / HISTORY_FILE
    if not path.is_file():
        return None
    try:
        history = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(history, list):
        raise ValueError(f"{path}: expected a JSON list of per-step records")
    return history


def _read_npz(path: Path) -> tuple[dict, list[np.ndarray]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (not a checkpoint directory?)")
    if not zipfile.is_zipfile(path):  # numpy would suggest allow_pickle for such a file; nothing here is pickled
        raise ValueError(f"{path}: not a twnn checkpoint (not an .npz archive; the file is damaged or another "
                         f"file took its name)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            if _META not in names:
                raise ValueError(f"{path}: not a twnn checkpoint (no {_META} entry)")
            meta = json.loads(str(npz[_META][()]))
            n = meta.get("n_leaves")
            expected = {f"leaf_{i:05d}" for i in range(n)} if isinstance(n, int) else None
            if expected is None or names - {_META} != expected:
                raise ValueError(f"{path}: leaf entries do not match the {n!r} leaves its header announces")
            leaves = [npz[f"leaf_{i:05d}"] for i in range(n)]
    except ValueError as err:
        if str(err).startswith(str(path)):
            raise
        raise ValueError(f"{path}: corrupt or truncated checkpoint ({err})") from err
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: corrupt or truncated checkpoint ({type(err).__name__}: {err})") from err
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: checkpoint format {meta.get('format')!r}, this version reads {FORMAT}")
    return meta, leaves


def load_checkpoint(directory) -> tuple[TrainConfig, TrainState]:
    """Read `(config, state)` from `directory`; ValueError naming the file for any mismatch or damage."""
    directory = Path(directory)
    config = load_config(directory)
    path = directory / STATE_FILE
    meta, leaves = _read_npz(path)
    if meta.get("config") != json.loads(dumps_strict(config.to_dict())):
        saved = meta.get("config") or {}
        diff = sorted(k for k in set(saved) | set(config.to_dict()) if saved.get(k) != config.to_dict().get(k))
        raise ValueError(f"{path}: saved with a different config than {directory / CONFIG_FILE} (differs in {diff})")
    template = jax.eval_shape(build_trainer(config).init, config.seed)
    t_leaves, treedef = jax.tree.flatten(template)
    if len(leaves) != len(t_leaves):
        raise ValueError(
            f"{path}: holds {len(leaves)} arrays, the config's TrainState has {len(t_leaves)} "
            "(saved by a different model or optimizer?)"
        )
    names = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(template)[0]]
    for name, got, want in zip(names, leaves, t_leaves):
        if got.shape != want.shape or got.dtype != want.dtype:
            raise ValueError(
                f"{path}: leaf {name} is {got.dtype}{list(got.shape)}, the config expects "
                f"{want.dtype}{list(want.shape)} (mismatched config, or saved with/without jax_enable_x64)"
            )
        if np.issubdtype(got.dtype, np.inexact) and not np.all(np.isfinite(got)):
            bad = int(np.size(got) - np.count_nonzero(np.isfinite(got)))
            raise ValueError(
                f"{path}: leaf {name} holds {bad} non-finite value(s) (NaN or inf); training never saves those "
                "(a step with a non-finite update is skipped), so the file is damaged; resuming from it would skip "
                "every step"
            )
    state = jax.tree.unflatten(treedef, [jax.numpy.asarray(x) for x in leaves])
    return config, state

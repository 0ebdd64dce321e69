"""Which code the results came from, and whether it changed since: results are only as current as the code.

`code_version()` is recorded in results.json when the experiment runs; `changed_since(commit)` lists
the files of the code that produces results (`twnn_jax/`) that differ from that commit now, committed
or not; `check_results(folder)` says in one line whether a results folder is current.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import twnn_jax

CODE = "twnn_jax"  # the code that produces the results, relative to the repository root


def _root() -> Path:
    return Path(twnn_jax.__file__).resolve().parent.parent


def _git(root: Path, *args: str) -> str | None:
    """`git args` in `root`: its stdout, or None when git is missing or the command fails."""
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _in_checkout(root: Path) -> bool:
    top = _git(root, "rev-parse", "--show-toplevel")
    return top is not None and Path(top.strip()).resolve() == root.resolve()


def code_version(root: Path | None = None) -> dict:
    """{"commit": HEAD's hash or None (not a git checkout), "dirty": whether `twnn_jax/` differs from it}."""
    root = _root() if root is None else Path(root)
    if not _in_checkout(root):
        return {"commit": None, "dirty": None}
    head = _git(root, "rev-parse", "HEAD")
    changed = changed_since(head.strip(), root) if head else None
    return {"commit": head.strip() if head else None, "dirty": None if changed is None else bool(changed)}


def changed_since(commit: str, root: Path | None = None) -> list[str] | None:
    """Files under `twnn_jax/` that differ from `commit` now (committed since, edited or new; sorted).

    None when it cannot be checked: not a git checkout, or the commit is unknown to it.
    """
    root = _root() if root is None else Path(root)
    if not commit or not _in_checkout(root) or _git(root, "cat-file", "-e", f"{commit}^{{commit}}") is None:
        return None
    diff = _git(root, "diff", "--name-only", commit, "--", CODE)
    new = _git(root, "ls-files", "--others", "--exclude-standard", "--", CODE)
    if diff is None or new is None:
        return None
    return sorted({line for line in (diff + new).splitlines() if line.strip()})


def recorded_commit(folder) -> str | None:
    """The commit a results folder's results.json records (None when it records none)."""
    meta = json.loads((Path(folder) / "results.json").read_text())["meta"]
    return (meta.get("code") or {}).get("commit")


def check_results(folder, root: Path | None = None, name: str = "paper") -> tuple[bool | None, str]:
    """(current?, one line saying so): True when no file of `twnn_jax/` changed since the recorded commit and
    the tree was clean when the results were written; False when some did (listed); None when unknown."""
    path = Path(folder) / "results.json"
    if not path.is_file():
        return None, f"no results at {path}: run `twnn experiment {name}` first"
    meta = json.loads(path.read_text())["meta"]
    code = meta.get("code") or {}
    commit = code.get("commit")
    if not commit:
        return None, f"{path} records no commit: cannot tell which code wrote it"
    changed = changed_since(commit, root)
    short = commit[:12]
    if changed is None:
        return None, (f"results from commit {short}; cannot check whether the code changed since "
                      "(not a git checkout, or the commit is not in it)")
    dirty = " (written from uncommitted changes)" if code.get("dirty") else ""
    if changed:
        return False, (f"STALE: results from commit {short}{dirty}; changed since in {CODE}/: " + ", ".join(changed))
    if code.get("dirty"):
        return False, f"UNCERTAIN: results from commit {short} with uncommitted changes in {CODE}/ at the time"
    return True, f"current: results from commit {short}; no file in {CODE}/ changed since"

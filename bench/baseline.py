"""`--baseline REF`: another revision of the poller (a release tag, a commit) run end to end
on the same table, in turn with this tree's runs, so a change on the hot path reads as a
same-run ratio (the guide: within 5% of before). The revision is checked out once, as a
detached git worktree under ~/.cache/poller-bench/, and runs on the Python path
(POLLER_NATIVE=0) with this tree's interpreter and the bench's config."""

from __future__ import annotations

import subprocess
from pathlib import Path

CACHE = Path.home() / ".cache" / "poller-bench"


def checkout(repo: Path, ref: str) -> tuple[Path, str]:
    """A worktree of `ref` (reused when it exists) and the commit it names."""
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", f"{ref}^{{commit}}"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    tree = CACHE / f"baseline-{commit[:12]}"
    if not (tree / "poller" / "__init__.py").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(repo), "worktree", "prune"], check=True)
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "add", "--force", "--detach", str(tree), commit],
            check=True, capture_output=True,
        )  # fmt: skip
    return tree, commit


def environment(tree: Path) -> dict[str, str]:
    """What a baseline run needs: its own package first, and the Python path."""
    return {"PYTHONPATH": str(tree), "POLLER_NATIVE": "0"}

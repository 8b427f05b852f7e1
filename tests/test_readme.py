"""Every ```bash and ```python block of README.md runs as written (the convention is in the
README's "Contributing" section).

The blocks run in README order, one after another, in a scratch folder that looks like the
repository root (links to its files, ``../shared`` beside it), so a block may use the files an
earlier one wrote and nothing lands in the real checkout. A block whose first line is a marker
is not run here:

- ``# needs: camera`` (or ``server``, ``ros``, ``ray-cluster``, ``network``; several with
  commas): a resource CI does not have; the feature's own tests cover it;
- ``# ci: not run — REASON``: a long job (training, a full dataset), said why.

A malformed marker fails, so blocks added later either run or say why they do not.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RUN = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python", "py": "python"}
NEEDS = frozenset({"camera", "server", "ros", "ray-cluster", "network"})
NEEDS_LINE = re.compile(r"# needs: ([a-z-]+(?:, [a-z-]+)*)(?: — .+)?")
CI_LINE = re.compile(r"# ci: not run — \S.+")
TIMEOUT_S = 120  # one block; the whole README runs in well under a minute


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    language: str
    code: str

    @property
    def marker(self) -> str:
        first = self.code.lstrip("\n").splitlines()[0] if self.code.strip() else ""
        return first.strip() if first.startswith("#") and ":" in first[:12] else ""

    def skip_reason(self) -> str | None:
        """Why the block is not run here (None: it runs); raises on a malformed marker."""
        marker = self.marker
        if not marker or not marker.startswith(("# needs", "# ci")):
            return None
        if m := NEEDS_LINE.fullmatch(marker):
            unknown = set(m.group(1).split(", ")) - NEEDS
            if not unknown:
                return f"needs {m.group(1)}"
            raise ValueError(f"README line {self.line}: unknown need {sorted(unknown)}")
        if CI_LINE.fullmatch(marker):
            return marker[2:]
        raise ValueError(f"README line {self.line}: malformed marker {marker!r}; write "
                         "'# needs: camera' (server, ros, ray-cluster, network) or "
                         "'# ci: not run — REASON'")


def blocks(text: str) -> list[Block]:
    """The fenced blocks in the runnable languages, in order."""
    found, fence = [], re.compile(r"^```(\w*)\s*$")
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = fence.match(lines[i])
        if not m:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        if m.group(1) in RUN:
            found.append(Block(i + 1, m.group(1), "\n".join(lines[i + 1:end]) + "\n"))
        i = end + 1
    return found


README_BLOCKS = blocks(README.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, media, landmarker_model) -> Path:
    """A folder that looks like the repository root, with ``../shared`` beside it."""
    base = tmp_path_factory.mktemp("readme")
    (base / "shared").symlink_to(media.parent, target_is_directory=True)
    repo = base / "repo"
    repo.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in (".git", "data", "runs", "results"):
            (repo / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return repo


def test_the_convention_is_kept_and_the_readme_has_runnable_blocks():
    assert sum(b.skip_reason() is None for b in README_BLOCKS) >= 5
    languages = {b.language for b in README_BLOCKS if b.skip_reason() is None}
    assert {"bash", "python"} <= {RUN[lang] for lang in languages}
    bad = Block(1, "bash", "# ci: skip\necho\n")
    with pytest.raises(ValueError, match="malformed marker"):
        bad.skip_reason()
    with pytest.raises(ValueError, match="unknown need"):
        Block(1, "bash", "# needs: gpu\n").skip_reason()
    assert Block(1, "bash", "# needs: camera, server\n").skip_reason() == "needs camera, server"


@pytest.mark.parametrize("block", README_BLOCKS, ids=[f"line{b.line}" for b in README_BLOCKS])
def test_readme_block_runs_as_written(block: Block, scratch: Path, tmp_path: Path):
    if reason := block.skip_reason():
        pytest.skip(reason)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
           f"{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    if RUN[block.language] == "bash":
        cmd = ["bash", "-e", "-o", "pipefail", "-c", block.code]
    else:
        script = tmp_path / f"readme_line{block.line}.py"
        script.write_text(block.code, encoding="utf-8")
        cmd = [sys.executable, str(script)]
    proc = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)
    assert proc.returncode == 0, (f"README line {block.line} failed "
                                  f"({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                                  f"{proc.stderr[-3000:]}")
    assert "Traceback" not in proc.stderr

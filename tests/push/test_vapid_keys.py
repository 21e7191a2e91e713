"""The VAPID key pair made on first start: one per data dir, whoever starts first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pigeon.push.vapid import KEY_FILE, load_vapid_keys

# Each says it is ready once imported, then loads the key when told to go.
LOAD = (
    "import sys, pathlib; from pigeon.push.vapid import load_vapid_keys\n"
    "print('ready', flush=True); sys.stdin.readline()\n"
    "print(load_vapid_keys(None, pathlib.Path(sys.argv[1]), 'mailto:a@b').public_key)"
)


def test_nodes_starting_at_once_on_one_data_dir_share_one_whole_key(tmp_path: Path) -> None:
    """``--workers 16`` on a fresh data dir: no node reads a half-written key."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    starting = [
        subprocess.Popen(
            [sys.executable, "-c", LOAD, str(data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(16)
    ]
    for process in starting:  # every one imported and waiting
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
    for process in starting:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    public_keys = {process.communicate(timeout=60)[0].strip() for process in starting}
    assert all(process.returncode == 0 for process in starting)
    assert public_keys == {load_vapid_keys(None, data_dir, "mailto:a@b").public_key}
    assert [path.name for path in data_dir.iterdir()] == [KEY_FILE]  # no drafts left

"""The VAPID key pair made on first start: one per data dir, whoever starts first."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from pigeon.push.vapid import KEY_FILE, load_vapid_keys

# Imported first, then all load at the same moment (when ``go`` appears).
LOAD = (
    "import sys, pathlib, time; from pigeon.push.vapid import load_vapid_keys\n"
    "folder = pathlib.Path(sys.argv[1])\n"
    "while not (folder.parent / 'go').exists(): time.sleep(0.0005)\n"
    "print(load_vapid_keys(None, folder, 'mailto:a@b').public_key)"
)


def test_nodes_starting_at_once_on_one_data_dir_share_one_whole_key(tmp_path: Path) -> None:
    """``--workers 16`` on a fresh data dir: no node reads a half-written key."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    starting = [
        subprocess.Popen(
            [sys.executable, "-c", LOAD, str(data_dir)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(16)
    ]
    time.sleep(1.0)  # every process imported and waiting (a bound, not a measure)
    (tmp_path / "go").touch()
    public_keys = {process.communicate(timeout=60)[0].strip() for process in starting}
    assert all(process.returncode == 0 for process in starting)
    assert public_keys == {load_vapid_keys(None, data_dir, "mailto:a@b").public_key}
    assert [path.name for path in data_dir.iterdir()] == [KEY_FILE]  # no drafts left

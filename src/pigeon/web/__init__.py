"""The web client's built files (``web/`` in the repository, built by Vite into ``static/``).

They ship inside the package, so ``pip install pigeon`` serves the app without node.
"""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"

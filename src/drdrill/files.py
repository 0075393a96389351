"""Input files are regular files: a FIFO or a device as runbook or config is refused at once.

Reading a FIFO blocks until someone writes to it (pytest's collection hung on one), and a
device may never end: neither is a runbook or a config.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


def not_a_regular_file(path: Path) -> str | None:
    """Why ``path`` is no regular file (``"is a FIFO"``), or None when it is one or does not
    exist (its reader says so)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    return f"is {_KINDS.get(stat.S_IFMT(mode), 'not a regular file')}, not a file to read"

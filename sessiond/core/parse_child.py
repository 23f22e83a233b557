"""`python -m sessiond.core.parse_child FOLDER DEV INO NAME MAX_BYTES`: parse one big file, pickle the result to stdout.

Started by bigfile.read_in_child; opens the folder itself and checks it is still
the one verified (device, inode), and reads at most MAX_BYTES + 1 bytes.
"""

from __future__ import annotations

import pickle
import sys

from sessiond.core.bigfile import CHANGED
from sessiond.core.folder import Folder, FolderUnusable
from sessiond.core.loader import read_state


def main(argv: list[str]) -> None:
    """Read *argv*'s file and write its pickled state to stdout; exit 3 out of memory, CHANGED if the folder moved."""
    path, dev, ino, name, max_bytes = argv[0], int(argv[1]), int(argv[2]), argv[3], int(argv[4])
    try:
        with Folder(path, (dev, ino)).open() as dir_fd:
            state = read_state(dir_fd, name, max_bytes, inline_bytes=max_bytes)
    except MemoryError:
        sys.exit(3)
    except FolderUnusable:
        sys.exit(CHANGED)
    sys.stdout.buffer.write(pickle.dumps(state))


if __name__ == "__main__":
    main(sys.argv[1:])

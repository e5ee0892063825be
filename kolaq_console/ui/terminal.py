"""Noticing that the console's terminal went away (an ssh session dropped, a tmux pane killed).

When the process is not the session leader (started by `make console`, a shell script or a
wrapper), the hang-up signal goes to the leader only; Textual's input thread then reads EOF
in a loop and the console, with its embedded worker, would run on unseen for ever. The
controlling terminal is gone once /dev/tty can no longer be opened: the app quits then, as
`q` would (running jobs finish, then the worker stops).
"""

from __future__ import annotations

import os

CHECK_SECONDS = 2.0


def has_terminal() -> bool:
    """True while this process has a controlling terminal."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True

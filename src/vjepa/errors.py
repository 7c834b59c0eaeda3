"""The error every user-fixable problem raises, and how user-supplied text is shown in messages.

`VjepaError` is the base class of every error the user can fix (a bad file, line, key or value): the CLI
prints its message as one line instead of a traceback. The message names the file and the line or the
config key. It subclasses `ValueError` so that code written against the former per-module errors (all
``ValueError``s) keeps working.

User-supplied text (paths, index lines, config values) can hold anything: control characters, a NUL byte,
a megabyte of characters. `shown` makes it printable and short enough for one log line.
"""

from __future__ import annotations

# Longest user-supplied string printed in a message; longer ones keep their head and tail.
MAX_SHOWN_CHARS = 240


class VjepaError(ValueError):
    """A problem the user can fix; the message names the file and the line or the config key."""


def shown(text: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """``text`` as it may appear in a one-line message: control characters (newlines, NUL, ...) escaped as
    ``repr`` does, and the middle of a string longer than ``limit`` replaced by ``...(N chars)...``.

    Args:
        text: a path, a line, a value (converted with ``str``).
        limit: the longest result kept whole.
    """
    text = str(text)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if len(text) <= limit:
        return text
    keep = max(limit // 2 - 10, 8)
    return f"{text[:keep]}...({len(text) - 2 * keep} chars)...{text[-keep:]}"

"""The error every user-fixable problem raises, and how user-supplied text is shown in messages.

`VjepaError` is the base class of every error the user can fix (a bad file, line, key or value): the CLI
prints its message as one line instead of a traceback. The message names the file and the line or the
config key. It is not a `ValueError`: the CLI catches `VjepaError` only, so a bug (a ``ValueError``,
``KeyError``, ... raised by a mistake in vjepa's code) keeps its traceback.

This module imports nothing (no torch), so that the CLI can catch `VjepaError` before torch loads.

User-supplied text (paths, index lines, config values) can hold anything: control characters, a NUL byte,
a megabyte of characters. `shown` makes it printable and short enough for one log line.
"""

from __future__ import annotations

# Longest user-supplied string printed in a message; longer ones keep their head and tail.
MAX_SHOWN_CHARS = 240


class VjepaError(Exception):
    """A problem the user can fix; the message names the file and the line or the config key."""

    exit_code = 2  # what the CLI exits with after printing the message


class InvalidArgument(VjepaError):
    """A value given on the command line or to a library function that is out of its range or unknown (a
    size, a count, a model name); the message names the option or the argument."""


class ConfigError(VjepaError):
    """A config that cannot be built; the message names the file and the dotted key (raised by
    :mod:`vjepa.config` and its YAML reader, :mod:`vjepa.yaml_reader`)."""


class OutOfMemory(VjepaError):
    """A step needed more GPU or CPU memory than there was; the message says which settings lower it."""


def as_out_of_memory(err: BaseException, device: str, tips: list[str]) -> OutOfMemory | None:
    """torch's out-of-memory error (CUDA's ``OutOfMemoryError``, or the CPU allocator's refusal) as an
    `OutOfMemory` naming ``device`` and the ``tips`` (what to change); None for any other error. Recognised by
    the class name and message, so that this module need not import torch."""
    text = str(err).strip()
    message = text.splitlines()[0] if text else type(err).__name__
    oom = type(err).__name__ == "OutOfMemoryError" or "DefaultCPUAllocator: can't allocate memory" in message
    if not isinstance(err, RuntimeError) or not oom:
        return None
    return OutOfMemory(f"out of {device} memory ({message}); " + "; ".join(tips))


def utf8_text(data: bytes, source: object, error: type[VjepaError], what: str) -> str:
    """``data`` decoded as UTF-8 (a leading byte-order mark dropped), or ``error`` naming ``source`` and the
    line of the first byte that is not UTF-8.

    Args:
        data: the file's bytes.
        source: the file, for the message.
        error: the error class to raise.
        what: what the file should be, for the message (e.g. ``"a config is a YAML text file"``).
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise error(
            f"{shown(source)}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); {what}"
        ) from None


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

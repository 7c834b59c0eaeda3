"""One progress convention for every command (pretrain, eval, extract, demo): a tqdm bar when stderr is a
terminal, otherwise a plain log line every ``interval_s`` seconds and one at the end, so that the logs of
non-interactive runs (files, CI, ``nohup``) hold readable lines instead of bar redraws.

Only the main process reports; pass ``enabled=False`` on the others.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Literal, TypeVar

from tqdm import tqdm

T = TypeVar("T")
Mode = Literal["auto", "bar", "lines", "off"]


def hms(seconds: float) -> str:
    """``h:mm:ss``."""
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("ch", "s", "x")) else "s")


class Progress:
    """Progress of one piece of work.

    Args:
        total: units of work (None: unknown).
        desc: what is being done, e.g. ``"caching train features"``.
        unit: name of one unit (``step``, ``batch``, ...).
        initial: units already done (a resumed run).
        enabled: False on processes other than the main one (nothing is shown).
        mode: ``auto`` (bar on a terminal, lines otherwise), ``bar``, ``lines`` (time-based lines) or
            ``off``.
        interval_s: seconds between two lines in line mode.
        lines: False when the caller prints its own periodic lines (then line mode prints nothing).
        leave: keep the finished bar on the terminal (a run's main bar) instead of erasing it (short passes).
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        unit: str = "it",
        initial: int = 0,
        enabled: bool = True,
        mode: Mode = "auto",
        interval_s: float = 30.0,
        lines: bool = True,
        leave: bool = False,
    ) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode: Mode = mode if enabled else "off"
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self.start_n = initial
        self.interval_s = interval_s
        self.show_lines = lines and self.mode == "lines"
        self.postfix: dict[str, Any] = {}
        self._start = self._last = time.perf_counter()
        self._lines_printed = 0
        self._bar = None
        if self.mode == "bar":
            self._bar = tqdm(
                total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, leave=leave
            )

    @property
    def terminal(self) -> bool:
        """True when a bar is shown (callers then leave their own periodic lines out)."""
        return self._bar is not None

    def update(self, n: int = 1, **postfix: Any) -> None:
        """``n`` more units done; ``postfix`` values are shown beside the count."""
        self.n += n
        if postfix:
            self.postfix = postfix
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix(postfix)
        elif self.show_lines and time.perf_counter() - self._last >= self.interval_s:
            self._line()

    def write(self, text: str, err: bool = False) -> None:
        """A message that does not break the bar (stdout, or stderr with ``err``); none when disabled."""
        if self.mode == "off":
            return
        stream = sys.stderr if err else sys.stdout
        if self._bar is not None:
            self._bar.write(text, file=stream)
        else:
            print(text, file=stream, flush=True)

    def close(self) -> None:
        """End the bar, or print the last line (line mode)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.show_lines:
            if self._lines_printed or time.perf_counter() - self._start >= self.interval_s:
                self._line(final=True)  # short work (under one interval) leaves no line
            self.show_lines = False

    def _line(self, final: bool = False) -> None:
        now = time.perf_counter()
        self._last = now
        self._lines_printed += 1
        units = _plural(self.unit)
        done = self.n - self.start_n
        rate = done / max(now - self._start, 1e-9)
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        text = f"{self.desc}: {count} {units}"
        if self.total and not final:
            text += f" ({100 * self.n / self.total:.0f}%), eta {hms((self.total - self.n) / max(rate, 1e-9))}"
        text += f", {rate:.2f} {units}/s" + (f", done in {hms(now - self._start)}" if final else "")
        if self.postfix:
            text += ", " + ", ".join(f"{k} {v}" for k, v in self.postfix.items())
        print(text, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(
    items: Iterable[T], total: int | None, desc: str, *, unit: str = "it", enabled: bool = True
) -> Iterator[T]:
    """Iterate over ``items`` with a :class:`Progress` (closed at the end, also on errors)."""
    with Progress(total, desc, unit=unit, enabled=enabled) as progress:
        for item in items:
            yield item
            progress.update(1)

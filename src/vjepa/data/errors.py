"""Bad-file accounting: which videos failed, why, and when to stop the run.

A bad video (missing, empty, truncated, corrupt, without frames, too short) raises `VideoDecodeError` in
`decode.py`. The dataset catches exactly that error, draws a replacement deterministically and records a
`SkippedVideo` on the sample it returns. Samples are made in DataLoader workers, so the skips travel with the
samples to the main process, where a `FailureTracker` counts them and stops the run past `FailurePolicy`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from vjepa.errors import InvalidArgument, VjepaError, shown

logger = logging.getLogger(__name__)


class VideoDecodeError(VjepaError):
    """A video (or image) that cannot give the frames a sample needs.

    Args:
        path: the file (shown shortened and with control characters escaped in the message).
        reason: a short human-readable cause, e.g. ``"missing file"`` or ``"corrupt: Invalid data ..."``.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{shown(path)}: {reason}")
        self.path = path
        self.reason = reason


class VideoTooShortError(VideoDecodeError):
    """Fewer decodable frames than a clip needs.

    Args:
        path: the file.
        reason: human-readable cause.
        num_frames: the number of frames that could actually be decoded (or the container's count).
    """

    def __init__(self, path: str, reason: str, num_frames: int) -> None:
        super().__init__(path, reason)
        self.num_frames = num_frames


class TooManyFailuresError(VjepaError):
    """More draws failed than `FailurePolicy` allows (bad videos the user can remove or replace); the message
    lists the failing files."""


@dataclass(frozen=True)
class SkippedVideo:
    """One failed attempt to load a record.

    Args:
        path: the file that failed.
        reason: why (the `VideoDecodeError` reason).
        draw: the global draw position whose sample it was meant to be.
    """

    path: str
    reason: str
    draw: int


@dataclass(frozen=True)
class FailurePolicy:
    """When bad files stop a run.

    Args:
        max_failure_rate: the run stops when failed attempts / all attempts exceeds this fraction ...
        min_failures: ... and at least this many attempts failed (so one bad file early on does not stop it).
        max_attempts: records tried for one draw before the draw itself fails (bounds every retry loop).
    """

    max_failure_rate: float = 0.1
    min_failures: int = 10
    max_attempts: int = 10

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise InvalidArgument(f"max_failure_rate must lie in [0, 1], got {self.max_failure_rate}")
        if self.min_failures < 1:
            raise InvalidArgument(f"min_failures must be >= 1, got {self.min_failures}")
        if self.max_attempts < 1:
            raise InvalidArgument(f"max_attempts must be >= 1, got {self.max_attempts}")


def format_failures(skipped: list[SkippedVideo] | tuple[SkippedVideo, ...], limit: int = 50) -> str:
    """One line per failing file (with its count and first reason), most frequent first."""
    counts = Counter(s.path for s in skipped)
    reasons: dict[str, str] = {}
    for s in skipped:
        reasons.setdefault(s.path, s.reason)
    lines = [f"  {shown(path)} ({n}x): {reasons[path]}" for path, n in counts.most_common(limit)]
    if len(counts) > limit:
        lines.append(f"  ... and {len(counts) - limit} more files")
    return "\n".join(lines)


class FailureTracker:
    """Counts successful and failed attempts in the main process and enforces a `FailurePolicy`.

    Args:
        policy: the bounds.
    """

    def __init__(self, policy: FailurePolicy) -> None:
        self.policy = policy
        self.successes = 0
        self.skipped: list[SkippedVideo] = []
        self._seen_paths: set[str] = set()

    @property
    def failures(self) -> int:
        return len(self.skipped)

    @property
    def failure_rate(self) -> float:
        attempts = self.successes + self.failures
        return self.failures / attempts if attempts else 0.0

    @property
    def bad_paths(self) -> list[str]:
        """Each failing file once, in order of first failure."""
        return list(dict.fromkeys(s.path for s in self.skipped))

    def update(self, num_samples: int, skipped: list[SkippedVideo] | tuple[SkippedVideo, ...]) -> None:
        """Record a batch: `num_samples` delivered samples and the failed attempts made for them.

        Raises:
            TooManyFailuresError: when the policy's bound is exceeded.
        """
        self.successes += num_samples
        for s in skipped:
            self.skipped.append(s)
            if s.path not in self._seen_paths:
                self._seen_paths.add(s.path)
                logger.warning("skipping bad video %s: %s (draw %d)", shown(s.path), s.reason, s.draw)
        self.check()

    def check(self) -> None:
        """Raise `TooManyFailuresError` when the failure count and rate are both past the policy."""
        if self.failures >= self.policy.min_failures and self.failure_rate > self.policy.max_failure_rate:
            raise TooManyFailuresError(
                f"{self.failures} of {self.successes + self.failures} video loads failed "
                f"({self.failure_rate:.1%} > max_failure_rate {self.policy.max_failure_rate:.1%}); "
                f"failing files:\n{format_failures(self.skipped)}"
            )

    def summary(self) -> str:
        """A one-paragraph report for logs."""
        if not self.skipped:
            return f"{self.successes} samples, no bad videos"
        return (
            f"{self.successes} samples, {self.failures} failed loads in {len(self.bad_paths)} files:\n"
            f"{format_failures(self.skipped)}"
        )

    def state_dict(self) -> dict:
        return {
            "successes": self.successes,
            "skipped": [(s.path, s.reason, s.draw) for s in self.skipped],
        }

    def load_state_dict(self, state: dict) -> None:
        self.successes = int(state["successes"])
        self.skipped = [SkippedVideo(p, r, int(d)) for p, r, d in state["skipped"]]
        self._seen_paths = set(self.bad_paths)

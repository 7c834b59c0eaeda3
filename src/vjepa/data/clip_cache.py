"""A cache of decoded videos, so that repeated epochs over a dataset that fits do not decode again.

Each entry is one whole video decoded to RGB uint8 ``[N, H, W, 3]`` (after the decoder's optional shrinking)
in a ``.npy`` file, read back memory-mapped: the clip's frames are gathered from the page cache, shared by
every DataLoader worker and every run on the machine. Only decoding is cached; the window, the crop and the
flip of each sample are still drawn from its ``(seed, draw)`` generator, so augmentation stays random per
epoch, resume stays exact, and a clip is bit-identical with and without the cache.

An entry's key is a hash of the file's **content** (BLAKE2b of its bytes) and of the **decode settings**
(``max_short_side``, the PyAV version, the cache format), so a changed file or changed settings miss the
cache and decode afresh; the stale entry is never read again (delete the folder to reclaim its space).
Within a process the content hash of a path is remembered while its size, modification time and inode stay
the same.

The cache only grows up to ``max_bytes`` (checked approximately across worker processes: each re-counts
the folder after writing a tenth of the budget); past it, videos are decoded as usual. A video that cannot
be decoded whole is left to the normal reader (which then reports it). Entries are written to a temporary
file and renamed, so concurrent workers and killed runs never leave a partial entry.

``open_clip_cache`` decides from the config (``data.clip_cache``): ``false``; ``true`` (cache up to the budget);
``auto`` (on when the dataset's estimated decoded size, from a few of its videos, fits the budget, half the
RAM and the free disk space).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat as stat_module
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import av
import numpy as np

from vjepa.data.decode import VideoReader, output_size
from vjepa.data.errors import VideoDecodeError, VideoTooShortError
from vjepa.errors import InvalidArgument
from vjepa.io import atomic_write, write_json

CacheMode = Literal["auto"] | bool
CACHE_FORMAT = 1
_HASH_CHUNK = 1 << 20
_PROBED_VIDEOS = 8


def default_cache_dir() -> Path:
    """``$VJEPA_CACHE_DIR/clips``, else ``$XDG_CACHE_HOME/vjepa/clips``, else ``~/.cache/vjepa/clips``."""
    if os.environ.get("VJEPA_CACHE_DIR"):
        return Path(os.environ["VJEPA_CACHE_DIR"]) / "clips"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vjepa" / "clips"


def decode_settings(max_short_side: int | None) -> dict[str, object]:
    """Everything besides the file's bytes that decides the decoded frames."""
    return {"format": CACHE_FORMAT, "max_short_side": max_short_side, "pyav": av.__version__}


@dataclass(frozen=True)
class CachedVideo:
    """A decoded video.

    Args:
        frames: ``[N, H, W, 3]`` uint8 (memory-mapped when read from the cache), N = the decodable frames.
        num_frames: the frame count the container states (the reader samples clips from it).
        fps: the average frame rate.
    """

    frames: np.ndarray
    num_frames: int
    fps: float


@dataclass
class CacheStats:
    """What a process's cache did (per process: DataLoader workers count their own)."""

    hits: int = 0
    stored: int = 0
    skipped: int = 0  # not stored: over the budget, or not decodable whole
    bytes_written: int = 0


@dataclass
class _Stat:
    size: int
    mtime_ns: int
    inode: int


class ClipCache:
    """Decoded videos on disk, memory-mapped on read (see the module docstring).

    Args:
        root: the cache folder (created on first write).
        max_bytes: stop storing new entries once the folder holds this many bytes.
    """

    def __init__(self, root: str | Path, max_bytes: int) -> None:
        if max_bytes < 0:
            raise InvalidArgument(f"max_bytes must be >= 0, got {max_bytes}")
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.stats = CacheStats()
        self._digests: dict[str, tuple[_Stat, str]] = {}
        self._skip: set[str] = set()  # keys not to decode whole again (too big, or not decodable)
        self._used: int | None = None  # bytes in the folder, as last counted plus what this process wrote
        self._since_count = 0

    # -- keys ------------------------------------------------------------------------------------------------
    def content_digest(self, path: str) -> str:
        """BLAKE2b of the file's bytes (remembered while its size, mtime and inode stay the same).

        Raises:
            OSError: missing, unreadable, or not a regular file (a FIFO would block the read).
            ValueError: an invalid path (e.g. a NUL byte in it).
        """
        st = os.stat(path)
        if not stat_module.S_ISREG(st.st_mode):
            raise (
                IsADirectoryError(path) if stat_module.S_ISDIR(st.st_mode) else OSError(f"{path}: not a file")
            )
        stat = _Stat(st.st_size, st.st_mtime_ns, st.st_ino)
        known = self._digests.get(path)
        if known is not None and known[0] == stat:
            return known[1]
        h = hashlib.blake2b(digest_size=20)
        with open(path, "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                h.update(chunk)
        digest = h.hexdigest()
        self._digests[path] = (stat, digest)
        return digest

    def key(self, path: str, max_short_side: int | None) -> str:
        """The entry name of ``path`` decoded with ``max_short_side``."""
        settings = json.dumps(decode_settings(max_short_side), sort_keys=True)
        h = hashlib.blake2b(digest_size=20)
        h.update(self.content_digest(path).encode())
        h.update(settings.encode())
        return h.hexdigest()

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.root / key[:2]
        return folder / f"{key}.npy", folder / f"{key}.json"

    # -- read ------------------------------------------------------------------------------------------------
    def load(self, path: str, max_short_side: int | None) -> CachedVideo | None:
        """The cached decoding of ``path``, or None on a miss."""
        return self._load(self.key(path, max_short_side))

    def _load(self, key: str) -> CachedVideo | None:
        frames_path, meta_path = self._paths(key)
        try:
            meta = json.loads(meta_path.read_text())
            frames = np.load(frames_path, mmap_mode="r")  # [N, H, W, 3] uint8
        except (OSError, ValueError):
            return None
        self.stats.hits += 1
        return CachedVideo(frames, int(meta["num_frames"]), float(meta["fps"]))

    def get(self, path: str, max_short_side: int | None, threads: int = 1) -> CachedVideo | None:
        """The decoded video from the cache; on a miss, decode it whole and store it (within the budget).

        Returns None when the video is not cached and is not stored (over the budget, or not decodable
        whole): the caller then reads it the usual way, which reports any error.

        Args:
            path: the video file.
            max_short_side: the decoder's shrinking (part of the key).
            threads: decoder threads.
        """
        try:
            key = self.key(path, max_short_side)
        except (OSError, ValueError):
            return None  # missing, unreadable, not a file, bad path: the normal reader reports it
        cached = self._load(key)
        if cached is not None or key in self._skip:
            return cached
        video = self._decode(path, max_short_side, threads)
        if video is None or not self._fits(video.frames.nbytes):
            self._skip.add(key)
            self.stats.skipped += 1
            return None
        self._store(key, video, path)
        return video

    # -- write -----------------------------------------------------------------------------------------------
    def _decode(self, path: str, max_short_side: int | None, threads: int) -> CachedVideo | None:
        """Every frame the reader can deliver, numbered as the reader numbers them; None if it cannot."""
        try:
            with VideoReader(path, max_short_side=max_short_side, threads=threads) as reader:
                stated, fps = reader.num_frames, reader.fps
                h, w = output_size(reader.info.height, reader.info.width, max_short_side)
                if not self._fits(stated * h * w * 3):
                    return None
                try:
                    frames = reader.read(np.arange(stated))  # [N, H, W, 3]
                except VideoTooShortError as e:  # the container over-states its frame count
                    if e.num_frames < 1:
                        return None
                    frames = reader.read(np.arange(e.num_frames))
        except VideoDecodeError:
            return None
        return CachedVideo(frames, stated, fps)

    def _fits(self, nbytes: int) -> bool:
        if self._used is None or self._since_count > self.max_bytes // 10:
            self._used, self._since_count = _folder_bytes(self.root), 0
        return self._used + nbytes <= self.max_bytes

    def _store(self, key: str, video: CachedVideo, source: str) -> None:
        frames_path, meta_path = self._paths(key)
        frames_path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "num_frames": video.num_frames,
            "fps": video.fps,
            "source": source,
            "shape": video.frames.shape,
        }
        write_json(meta_path, meta, indent=None)
        atomic_write(frames_path, lambda tmp: _save_npy(tmp, video.frames))
        size = frames_path.stat().st_size
        self._used = (self._used or 0) + size
        self._since_count += size
        self.stats.stored += 1
        self.stats.bytes_written += size


def _save_npy(path: Path, frames: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would append ".npy" to a temporary file's name
        np.save(f, np.ascontiguousarray(frames))


def _folder_bytes(root: Path) -> int:
    """Bytes of the entries under ``root`` (0 when it does not exist)."""
    total = 0
    if not root.is_dir():
        return 0
    for sub in os.scandir(root):
        if sub.is_dir():
            total += sum(e.stat().st_size for e in os.scandir(sub.path) if e.is_file())
    return total


# ------------------------------------------------------------------------------------------------ deciding


@dataclass
class CacheDecision:
    """Whether a dataset gets a clip cache, and why (one line for the log).

    Args:
        cache: the cache, or None.
        reason: why.
        estimated_bytes: the dataset's estimated decoded size (None when not estimated).
    """

    cache: ClipCache | None
    reason: str
    estimated_bytes: int | None = field(default=None)


def estimate_decoded_bytes(paths: Sequence[str], max_short_side: int | None) -> int | None:
    """The decoded size of all ``paths``, extrapolated from up to 8 of them spread over the list (their
    container headers only: nothing is decoded). None when none of them opens."""
    if not paths:
        return 0
    picks = sorted({round(i * (len(paths) - 1) / max(1, _PROBED_VIDEOS - 1)) for i in range(_PROBED_VIDEOS)})
    sizes = []
    for i in picks:
        try:
            with VideoReader(paths[i], max_short_side=max_short_side) as r:
                h, w = output_size(r.info.height, r.info.width, max_short_side)
                sizes.append(r.num_frames * h * w * 3)
        except VideoDecodeError:
            continue
    if not sizes:
        return None
    return int(sum(sizes) / len(sizes) * len(paths))


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def open_clip_cache(
    mode: CacheMode,
    paths: Sequence[str],
    max_short_side: int | None,
    *,
    cache_dir: str | Path | None = None,
    max_gb: float = 8.0,
) -> CacheDecision:
    """The clip cache of a dataset per ``mode`` (``"auto"``, True or False; see the module docstring).

    Args:
        mode: the configured mode.
        paths: the dataset's distinct video files.
        max_short_side: the decoder's shrinking.
        cache_dir: the cache folder (None: :func:`default_cache_dir`).
        max_gb: the cache folder's size limit in GB (1e9 bytes).
    """
    if not (isinstance(mode, bool) or mode == "auto"):
        raise InvalidArgument(f"clip cache mode must be 'auto', true or false, got {mode!r}")
    if mode is False:
        return CacheDecision(None, "off (data.clip_cache=false)")
    if max_gb <= 0:
        raise InvalidArgument(f"clip_cache_max_gb must be positive, got {max_gb}")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    budget = int(max_gb * 1e9)
    unique = sorted(set(paths))
    estimate = estimate_decoded_bytes(unique, max_short_side)
    size = "unknown size" if estimate is None else f"~{estimate / 1e9:.2f} GB decoded"
    where = f"{root}, up to {max_gb:g} GB"
    if mode is True:
        return CacheDecision(ClipCache(root, budget), f"on ({len(unique)} videos, {size}; {where})", estimate)
    if estimate is None:
        return CacheDecision(None, "off (auto: no video of the dataset opens to estimate its size)")
    existing = root if root.exists() else next((p for p in root.parents if p.exists()), Path("/"))
    limits = {"the budget data.clip_cache_max_gb": budget}
    memory = _memory_bytes()
    if memory is not None:
        limits["half the RAM"] = memory // 2
    limits["the free disk space"] = _free_bytes(existing) + _folder_bytes(root)
    over = [name for name, limit in limits.items() if estimate > limit]
    if over:
        return CacheDecision(None, f"off (auto: {size} for {len(unique)} videos exceeds {over[0]})", estimate)
    return CacheDecision(
        ClipCache(root, budget), f"on (auto: {len(unique)} videos, {size}; {where})", estimate
    )


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free

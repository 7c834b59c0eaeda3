"""Video and image decoding with PyAV. The only module of the package that imports `av`.

`VideoReader` opens a file, reads its frame count and rate from the container, and decodes only the frames
a clip needs: it seeks to the key frame before the first needed frame, decodes forward (skipping
non-reference frames until shortly before the clip), converts to RGB (optionally shrunk) only the frames it
keeps, and stops after the last one. Every PyAV/IO failure is turned into `VideoDecodeError`
with the path, so callers catch one error type.

Frame numbering: the index of a decoded frame is ``round((pts - start_time) * time_base * fps)`` with the
stream's average rate, which equals the decode-order index for constant-frame-rate video (and is the only
numbering that survives a seek). Frames without timestamps are numbered in decode order from the start of
the stream (a seek that meets one is abandoned for a decode from the start).

Frame count: the container's ``nb_frames``; else ``duration * fps``; else the packets are counted. When the
container claims more frames than can be decoded (truncated files, lying headers), `read` raises
`VideoTooShortError` carrying the number of frames that actually decoded, so the caller can re-sample once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from types import TracebackType

import av
import numpy as np

from vjepa.data.errors import VideoDecodeError, VideoTooShortError

# Files smaller than this cannot hold a decodable video frame (and can hang some demuxers).
MIN_FILE_BYTES = 64
# Seek only when the first needed frame is at least this far from the start: decoding a few frames from the
# start is cheaper than a seek (and avoids seek quirks at the beginning of streams).
SEEK_THRESHOLD_FRAMES = 16
# After a seek, non-reference frames are skipped until this many frames before the first needed one (more
# than any B-frame reordering delay, so no needed frame is skipped; if one were, `read` falls back).
PREROLL_MARGIN = 24
_DECODE_ERRORS = (av.error.FFmpegError, OSError)


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video stream.

    Args:
        num_frames: frame count (see the module docstring for its source).
        fps: average frame rate.
        width: frame width in pixels.
        height: frame height in pixels.
        frame_count_source: "container", "duration" or "packets".
    """

    num_frames: int
    fps: float
    width: int
    height: int
    frame_count_source: str


def output_size(height: int, width: int, max_short_side: int | None) -> tuple[int, int]:
    """(height, width) after shrinking so the short side is at most `max_short_side` (aspect kept, even sizes
    are not required). Returns the input size when no shrinking is needed."""
    if max_short_side is None or min(height, width) <= max_short_side:
        return height, width
    scale = max_short_side / min(height, width)
    if height <= width:
        return max_short_side, max(1, round(width * scale))
    return max(1, round(height * scale)), max_short_side


def _open(path: str) -> av.container.InputContainer:
    """Open a media file with a video stream, or raise `VideoDecodeError` saying why not."""
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise VideoDecodeError(path, "missing file") from None
    except OSError as e:
        raise VideoDecodeError(path, f"unreadable: {e}") from None
    if size < MIN_FILE_BYTES:
        raise VideoDecodeError(path, f"empty file ({size} bytes)")
    try:
        container = av.open(path, mode="r")
    except _DECODE_ERRORS as e:
        raise VideoDecodeError(path, f"cannot open: {e}") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "no video stream")
    return container


class VideoReader:
    """An open video file that decodes selected frames to RGB uint8.

    Use as a context manager: ``with VideoReader(path) as r: frames = r.read(indices)``.

    Args:
        path: the video file.
        max_short_side: if set and the video's short side is larger, frames are shrunk during decoding
            (swscale, bilinear, together with the RGB conversion) so their short side equals it.
        threads: decoder threads (1 in DataLoader workers; the workers are the parallelism).

    Raises:
        VideoDecodeError: missing, empty, unreadable, or without a video stream.
    """

    def __init__(self, path: str, *, max_short_side: int | None = None, threads: int = 1) -> None:
        self.path = path
        self.max_short_side = max_short_side
        self._container = _open(path)
        self._stream = self._container.streams.video[0]
        self._stream.thread_count = threads
        self._tail_error: Exception | None = None
        self._used = False  # whether decoding moved the read position (then a rewind needs a seek)
        try:
            self.info = self._probe()
        except VideoDecodeError:
            self.close()
            raise
        self._out_hw = output_size(self.info.height, self.info.width, max_short_side)

    # -- context manager -------------------------------------------------------------------------------------
    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    # -- metadata --------------------------------------------------------------------------------------------
    def _probe(self) -> VideoInfo:
        s = self._stream
        rate = s.average_rate or s.guessed_rate or s.base_rate
        fps = float(rate) if rate else 0.0
        width, height = s.codec_context.width, s.codec_context.height
        if width <= 0 or height <= 0:
            raise VideoDecodeError(self.path, f"invalid frame size {width}x{height}")
        if s.frames and s.frames > 0:
            return VideoInfo(int(s.frames), fps, width, height, "container")
        duration = None
        if s.duration is not None and s.time_base is not None:
            duration = float(s.duration * s.time_base)
        elif self._container.duration is not None:
            duration = self._container.duration / av.time_base
        if duration and fps > 0:
            return VideoInfo(int(round(duration * fps)), fps, width, height, "duration")
        count = self._count_packets()
        if count == 0:
            raise VideoDecodeError(self.path, "zero frames")
        return VideoInfo(count, fps, width, height, "packets")

    def _count_packets(self) -> int:
        """Count the video packets without decoding (one packet per frame in the common codecs)."""
        n = 0
        try:
            for packet in self._container.demux(self._stream):
                if packet.size > 0:
                    n += 1
            self._used = True
        except _DECODE_ERRORS as e:
            raise VideoDecodeError(self.path, f"cannot read packets: {e}") from None
        return n

    @property
    def num_frames(self) -> int:
        return self.info.num_frames

    @property
    def fps(self) -> float:
        return self.info.fps

    # -- decoding --------------------------------------------------------------------------------------------
    def _frame_index(self, frame: av.VideoFrame) -> int | None:
        if frame.pts is None or frame.time_base is None or self.info.fps <= 0:
            return None
        start = self._stream.start_time or 0
        return round(float((frame.pts - start) * frame.time_base) * self.info.fps)

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        h, w = self._out_hw
        if (h, w) == (frame.height, frame.width):
            return frame.to_ndarray(format="rgb24")  # [H, W, 3]
        return frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="BILINEAR")

    def _seek(self, index: int) -> None:
        s = self._stream
        target = (s.start_time or 0) + int(math.floor(index / self.info.fps / s.time_base))
        self._container.seek(target, stream=s, backward=True, any_frame=False)

    def _rewind(self) -> None:
        if self._used:
            self._container.seek(0, stream=self._stream, backward=True, any_frame=False)
        self._used = True

    def _decoded(self) -> Iterator[av.VideoFrame]:
        """Frames from the current read position to the end of the stream. A decode error ends the stream
        like the end of the file would (truncated or damaged tail); it is kept in `_tail_error`."""
        self._tail_error = None
        frames = self._container.decode(self._stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                return
            except _DECODE_ERRORS as e:
                self._tail_error = e
                return
            yield frame

    def _decode_range(
        self, wanted: set[int], first: int, last: int, seek: bool
    ) -> tuple[dict[int, np.ndarray], int]:
        """Decode from a seek point (or the start) up to frame `last`, converting only the wanted frames.

        After a seek, the frames before ``first - PREROLL_MARGIN`` are decoded with non-reference frames
        skipped (nothing depends on them); a frame without a timestamp aborts (the caller then decodes from
        the start, where decode order numbers the frames).

        Returns:
            (frames by index, index of the first decoded frame or -1 when none decoded).
        """
        found: dict[int, np.ndarray] = {}
        first_seen = -1
        codec = self._stream.codec_context
        skipping = False
        if seek:
            self._used = True
            self._seek(first)
            skipping = first > PREROLL_MARGIN
        else:
            self._rewind()
        try:
            if skipping:
                codec.skip_frame = "NONREF"
            for sequential, frame in enumerate(self._decoded()):
                idx = self._frame_index(frame)
                if idx is None:
                    if seek:
                        return {}, -1
                    idx = sequential
                if first_seen < 0:
                    first_seen = idx
                if skipping and idx >= first - PREROLL_MARGIN:
                    codec.skip_frame = "DEFAULT"
                    skipping = False
                if idx in wanted and idx not in found:
                    found[idx] = self._to_rgb(frame)
                if idx >= last:
                    break
        finally:
            codec.skip_frame = "DEFAULT"
        return found, first_seen

    def read(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """Decode the frames at `indices` (any order, repeats allowed).

        Args:
            indices: [N] frame indices.

        Returns:
            [N, H, W, 3] uint8 RGB (H, W after the optional shrinking).

        Raises:
            VideoTooShortError: some index lies past the last decodable frame; `.num_frames` is the number of
                frames that decoded.
            VideoDecodeError: the stream is corrupt.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            raise ValueError("read() needs at least one frame index")
        if idx.min() < 0:
            raise ValueError(f"negative frame index {int(idx.min())}")
        wanted = set(idx.tolist())
        first, last = min(wanted), max(wanted)
        seek = first >= SEEK_THRESHOLD_FRAMES and self.info.fps > 0 and self._stream.time_base is not None
        try:
            found, first_seen = self._decode_range(wanted, first, last, seek)
            missing = wanted.difference(found)
            if seek and (first_seen < 0 or first_seen > first or missing):
                # The seek overshot or landed past the data: decode from the start instead, once.
                found, first_seen = self._decode_range(wanted, first, last, seek=False)
                missing = wanted.difference(found)
            if missing:
                available = self._decodable_frames()
        except _DECODE_ERRORS as e:  # seeking failed
            raise VideoDecodeError(self.path, f"corrupt stream: {e}") from None
        if missing:
            tail = f" (decoding stopped: {self._tail_error})" if self._tail_error else ""
            if available == 0:
                raise VideoDecodeError(self.path, f"no decodable frame{tail}")
            raise VideoTooShortError(
                self.path,
                f"frame {max(missing)} not decodable: the container says {self.info.num_frames} frames "
                f"({self.info.frame_count_source}) but {available} decode{tail}",
                available,
            )
        return np.stack([found[i] for i in idx.tolist()])  # [N, H, W, 3]

    def _decodable_frames(self) -> int:
        """Count the frames that really decode (slow; used only after a failed read)."""
        self._rewind()
        return sum(1 for _ in self._decoded())

    def read_all(self) -> np.ndarray:
        """Decode every frame (the naive baseline of the benchmark; tests).

        Returns:
            [num_decoded, H, W, 3] uint8.
        """
        try:
            self._rewind()
            frames = [self._to_rgb(f) for f in self._decoded()]
        except _DECODE_ERRORS as e:
            raise VideoDecodeError(self.path, f"corrupt stream: {e}") from None
        if not frames:
            raise VideoTooShortError(self.path, f"no decodable frame ({self._tail_error})", 0)
        return np.stack(frames)


def read_image(path: str) -> np.ndarray:
    """Decode a still image (JPEG, PNG, ...) to RGB uint8 [H, W, 3].

    Args:
        path: the image file.

    Raises:
        VideoDecodeError: missing, empty or corrupt.
    """
    container = _open(path)
    try:
        frame = next(container.decode(container.streams.video[0]), None)
        if frame is None:
            raise VideoDecodeError(path, "no decodable image")
        return frame.to_ndarray(format="rgb24")  # [H, W, 3]
    except _DECODE_ERRORS as e:
        raise VideoDecodeError(path, f"corrupt image: {e}") from None
    finally:
        container.close()


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    *,
    fps: float,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    faststart: bool = False,
) -> None:
    """Encode RGB frames to a video file, deterministically (bit-exact muxing, one encoder thread).

    Used by the synthetic dataset, the tests and the benchmark.

    Args:
        path: output file; the container follows the extension (.mp4, .mkv, ...).
        frames: [T, H, W, 3] uint8 (H and W even for 4:2:0).
        fps: frame rate.
        codec: encoder name.
        pix_fmt: encoder pixel format, e.g. "yuv420p" or "yuv444p".
        options: encoder options, e.g. {"qp": "0"} for lossless x264.
        faststart: put the index (moov) before the data, as streaming mp4s do.
    """
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
    container_options = {"fflags": "+bitexact"}
    if faststart:
        container_options["movflags"] = "+faststart"
    with av.open(str(path), mode="w", options=container_options) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        stream.options = dict(options or {})
        stream.codec_context.thread_count = 1
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        container.start_encoding()  # write the header even when there are no frames
        for rgb in frames:
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            ):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)

"""Video and image decoding with PyAV. The only module of the package that imports `av`.

`VideoReader` opens a file, reads its frame count and rate from the container, and decodes only the frames
a clip needs: it seeks to the key frame before the first needed frame, decodes forward (skipping
non-reference frames until shortly before the clip, with decoders that allow it), converts to RGB
(optionally shrunk) only the frames it keeps, and stops after the last one. When that fast path misses a
frame, the file is opened afresh and decoded from its start. Every PyAV/IO failure is turned into
`VideoDecodeError` with the path, so callers catch one error type.

Frames are addressed by time: frame index ``i`` is the frame on screen at ``i / fps`` after the stream's
start (``fps``: the stream's average rate), i.e. the last decoded frame whose position
``(pts - start_time) * time_base * fps`` is at most ``i + 0.5``. For constant-frame-rate video this is
the i-th frame in presentation order; variable-frame-rate video and streams that start late (a first
timestamp of 10 s) are read on the same time grid. Frames without timestamps are numbered in decode order
from the start of the stream (a seek that meets one is abandoned for a decode from the start).

Frame count: the container's ``nb_frames``; else ``duration * fps``; else the packets are counted. When the
container claims more frames than can be decoded (truncated files, lying headers), `read` raises
`VideoTooShortError` carrying the number of frames that actually decoded, so the caller can re-sample once;
`verified_num_frames` gives the count that decodes up front.

Bounds: a frame larger than `MAX_FRAME_PIXELS` is refused before anything is decoded (a clear skip instead
of gigabytes of decoded frames); ``max_short_side`` shrinks the frames a caller keeps during the RGB
conversion.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from types import TracebackType

import av
import numpy as np

from vjepa.data.errors import VideoDecodeError, VideoTooShortError

# Files smaller than this cannot hold a decodable video frame (and can hang some demuxers).
MIN_FILE_BYTES = 64
# Largest frame (width x height) decoded at all: DCI 8K (8192 x 4320). A frame costs 1.5 bytes per pixel in
# the decoder (4:2:0) before any shrinking, times the reference frames it keeps.
MAX_FRAME_PIXELS = 8192 * 4320
# Seek only when the first needed frame is at least this far from the start: decoding a few frames from the
# start is cheaper than a seek (and avoids seek quirks at the beginning of streams).
SEEK_THRESHOLD_FRAMES = 16
# After a seek, non-reference frames are skipped until this many frames before the first needed one (more
# than any B-frame reordering delay, so no needed frame is skipped; if one were, `read` falls back).
PREROLL_MARGIN = 24
# Packets in a row that fail to decode before the rest of the stream is given up as damaged.
MAX_BAD_PACKETS = 16
# Decoders that honour a change of `skip_frame` between packets. Others (libdav1d reads it once, when it
# opens) would go on dropping frames, so they decode every frame.
SKIP_CAPABLE_DECODERS = frozenset({"h264", "hevc", "mpeg1video", "mpeg2video", "mpeg4"})
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


def _why(err: BaseException) -> str:
    """The cause of a PyAV / OS error without the file name it repeats (the message names the file once)."""
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return " ".join(str(text).split())


def _open(path: str) -> av.container.InputContainer:
    """Open a media file with a video stream, or raise `VideoDecodeError` saying why not."""
    if "\x00" in path:
        raise VideoDecodeError(path, "the path holds a NUL byte")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise VideoDecodeError(path, "missing file") from None
    except OSError as e:
        raise VideoDecodeError(path, f"unreadable: {_why(e)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise VideoDecodeError(path, "a folder, not a video file")
    if not stat.S_ISREG(info.st_mode):
        raise VideoDecodeError(path, "not a regular file (a pipe, socket or device)")
    if info.st_size < MIN_FILE_BYTES:
        raise VideoDecodeError(path, f"empty file ({info.st_size} bytes)")
    try:
        container = av.open(path, mode="r", metadata_errors="replace")
    except _DECODE_ERRORS as e:
        raise VideoDecodeError(path, f"cannot open: {_why(e)}") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "no video stream")
    return container


@dataclass
class _Decoded:
    """The outcome of one decoding pass.

    Args:
        frames: RGB frames by index.
        slots: frame indices the stream covers (known when the pass reached the end of the stream).
        usable: False when a seek could not be trusted (the caller decodes from the start instead).
    """

    frames: dict[int, np.ndarray]
    slots: int | None = None
    usable: bool = True


class VideoReader:
    """An open video file that decodes selected frames to RGB uint8.

    Use as a context manager: ``with VideoReader(path) as r: frames = r.read(indices)``.

    Args:
        path: the video file.
        max_short_side: if set and the video's short side is larger, frames are shrunk during decoding
            (swscale, bilinear, together with the RGB conversion) so their short side equals it.
        max_pixels: frames larger than this (width x height) are refused with `VideoDecodeError`.
        threads: decoder threads (1 in DataLoader workers; the workers are the parallelism).

    Raises:
        VideoDecodeError: missing, empty, unreadable, too large, without a video stream or its decoder.
    """

    def __init__(
        self,
        path: str,
        *,
        max_short_side: int | None = None,
        max_pixels: int = MAX_FRAME_PIXELS,
        threads: int = 1,
    ) -> None:
        self.path = str(path)
        self.max_short_side = max_short_side
        self.threads = threads
        self._container = _open(self.path)
        self._tail_error: Exception | None = None
        self._used = False  # whether decoding moved the read position (then a fresh decode reopens)
        try:
            self._stream = self._attach()
            self.info = self._probe(max_pixels)
        except VideoDecodeError:
            self.close()
            raise
        except _DECODE_ERRORS as e:
            self.close()
            raise VideoDecodeError(self.path, f"cannot read the stream: {_why(e)}") from None
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
    def _attach(self) -> av.video.stream.VideoStream:
        stream = self._container.streams.video[0]
        if stream.codec_context is None:
            raise VideoDecodeError(self.path, "no decoder for its video codec (unknown or unsupported codec)")
        stream.codec_context.thread_count = self.threads
        return stream

    def _probe(self, max_pixels: int) -> VideoInfo:
        s = self._stream
        rate = s.average_rate or s.guessed_rate or s.base_rate
        fps = float(rate) if rate else 0.0
        if not math.isfinite(fps) or fps < 0:
            fps = 0.0
        width, height = s.codec_context.width, s.codec_context.height
        if width <= 0 or height <= 0:
            raise VideoDecodeError(self.path, f"invalid frame size {width}x{height}")
        if width * height > max_pixels:
            raise VideoDecodeError(
                self.path,
                f"frames of {width}x{height} ({width * height / 1e6:.1f} megapixels) exceed the decoding limit "
                f"of {max_pixels / 1e6:.1f} megapixels",
            )
        if s.frames and s.frames > 0:
            return VideoInfo(int(s.frames), fps, width, height, "container")
        duration = self._duration()
        if duration and fps > 0:
            return VideoInfo(max(1, int(round(duration * fps))), fps, width, height, "duration")
        count = self._count_packets()
        if count == 0:
            raise VideoDecodeError(self.path, "zero frames")
        return VideoInfo(count, fps, width, height, "packets")

    def _duration(self) -> float | None:
        """Seconds of video from the stream's start, or None when the container does not say."""
        s, c = self._stream, self._container
        if s.duration is not None and s.time_base is not None:
            return float(s.duration * s.time_base)
        if c.duration is None:
            return None
        duration = c.duration / av.time_base
        if "matroska" in c.format.name and c.start_time:
            duration -= c.start_time / av.time_base  # Matroska's segment duration counts from time 0
        return duration if duration > 0 else None

    def _count_packets(self) -> int:
        """Count the video packets without decoding (one packet per frame in the common codecs)."""
        n = 0
        try:
            for packet in self._container.demux(self._stream):
                if packet.size > 0:
                    n += 1
            self._used = True
        except _DECODE_ERRORS as e:
            raise VideoDecodeError(self.path, f"cannot read packets: {_why(e)}") from None
        return n

    @property
    def num_frames(self) -> int:
        return self.info.num_frames

    @property
    def fps(self) -> float:
        return self.info.fps

    # -- decoding --------------------------------------------------------------------------------------------
    def _position(self, frame: av.VideoFrame) -> float | None:
        """The frame's place on the index grid (see the module docstring); None without a timestamp."""
        if frame.pts is None or frame.time_base is None or self.info.fps <= 0:
            return None
        start = self._stream.start_time or 0
        return float((frame.pts - start) * frame.time_base) * self.info.fps

    def _span(self, frame: av.VideoFrame) -> float:
        """How many index slots the frame stays on screen (1 when the container does not say)."""
        duration = getattr(frame, "duration", None)
        if not duration or frame.time_base is None or self.info.fps <= 0:
            return 1.0
        return max(float(duration * frame.time_base) * self.info.fps, 1.0)

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        h, w = self._out_hw
        if (h, w) == (frame.height, frame.width):
            return frame.to_ndarray(format="rgb24")  # [H, W, 3]
        return frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="BILINEAR")

    def _reopen(self) -> None:
        """A fresh container and decoder at the start of the file (no state left by seeks or skipping)."""
        self._container.close()
        self._container = _open(self.path)
        self._stream = self._attach()
        self._used = False

    def _seek(self, index: int) -> bool:
        """Seek to the key frame at or before frame `index`; False when the container cannot seek."""
        s = self._stream
        target = (s.start_time or 0) + int(math.floor(index / self.info.fps / s.time_base))
        self._used = True
        try:
            self._container.seek(target, stream=s, backward=True, any_frame=False)
        except _DECODE_ERRORS:  # e.g. raw elementary streams: decode from the start instead
            return False
        return True

    def _frames(self) -> Iterator[tuple[av.VideoFrame, float | None]]:
        """(frame, position) from the read position to the end of the stream, as FFmpeg's tools decode: a
        packet that fails to decode is skipped (the next frames still come, with their own timestamps);
        `MAX_BAD_PACKETS` failures in a row, or a demuxing error, end the stream like the end of the file
        would (truncated or damaged tail). The last error is kept in `_tail_error`."""
        self._tail_error = None
        self._used = True
        failures = 0
        packets = self._container.demux(self._stream)
        while failures < MAX_BAD_PACKETS:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except _DECODE_ERRORS as e:
                self._tail_error = e
                return
            try:
                frames = packet.decode()  # the last, empty packet flushes the decoder
            except _DECODE_ERRORS as e:
                self._tail_error, failures = e, failures + 1
                continue
            failures = 0
            for frame in frames:
                yield frame, self._position(frame)

    def _decode(self, wanted: list[int], seek: bool, to_end: bool = False) -> _Decoded:
        """Decode the sorted indices `wanted`, from a seek point before the first one or from the start.

        Index ``i`` gets the last frame at position ``<= i + 0.5``. After a seek, a frame past the first
        wanted index or without a timestamp makes the pass unusable. With `to_end`, decoding goes on to the
        end of the stream so that ``slots`` is known.
        """
        first = wanted[0]
        if seek and not self._seek(first):
            return _Decoded({}, usable=False)
        if not seek and self._used:
            self._reopen()
        codec = self._stream.codec_context
        skipping = seek and first > PREROLL_MARGIN and codec.name in SKIP_CAPABLE_DECODERS
        found: dict[int, np.ndarray] = {}
        j, prev, prev_rgb, prev_pos, prev_span = 0, None, None, -math.inf, 1.0
        try:
            if skipping:
                codec.skip_frame = "NONREF"
            for count, (frame, pos) in enumerate(self._frames()):
                if pos is None:
                    if seek:
                        return _Decoded({}, usable=False)
                    pos = float(count)
                if prev is None and seek and pos > first + 0.5:
                    return _Decoded({}, usable=False)  # the seek overshot
                if skipping and pos >= first - PREROLL_MARGIN:
                    codec.skip_frame = "DEFAULT"
                    skipping = False
                while j < len(wanted) and wanted[j] + 0.5 < pos:
                    if prev is None:  # before the first frame of the stream: that frame is on screen
                        found[wanted[j]] = self._to_rgb(frame)
                    else:
                        prev_rgb = self._to_rgb(prev) if prev_rgb is None else prev_rgb
                        found[wanted[j]] = prev_rgb
                    j += 1
                prev, prev_rgb, prev_pos, prev_span = frame, None, max(pos, prev_pos), self._span(frame)
                if j == len(wanted) and not to_end:
                    return _Decoded(found)
        finally:
            codec.skip_frame = "DEFAULT"
        if prev is None:
            return _Decoded(found, slots=0)
        end = min(prev_pos + prev_span - 0.5, max(prev_pos + 0.5, self.info.num_frames - 1.0))
        slots = math.floor(end + 1e-6) + 1
        while j < len(wanted) and wanted[j] < slots:
            prev_rgb = self._to_rgb(prev) if prev_rgb is None else prev_rgb
            found[wanted[j]] = prev_rgb
            j += 1
        return _Decoded(found, slots=max(slots, 0))

    def _can_seek(self, first: int) -> bool:
        return first >= SEEK_THRESHOLD_FRAMES and self.info.fps > 0 and self._stream.time_base is not None

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
        wanted = sorted(set(idx.tolist()))
        try:
            result = _Decoded({}, usable=False)
            if self._can_seek(wanted[0]):
                result = self._decode(wanted, seek=True)
            if not result.usable or (len(result.frames) < len(wanted) and not self._clean_end(result)):
                result = self._decode(wanted, seek=False)
        except _DECODE_ERRORS as e:  # seeking failed
            raise VideoDecodeError(self.path, f"corrupt stream: {_why(e)}") from None
        missing = [i for i in wanted if i not in result.frames]
        if missing:
            self._raise_missing(max(missing), result.slots or 0)
        return np.stack([result.frames[i] for i in idx.tolist()])  # [N, H, W, 3]

    def _clean_end(self, result: _Decoded) -> bool:
        """A pass that reached the end of the stream without an error knows how many frames the stream has
        (positions are timestamps, so the frames before a seek point need not be decoded to count them)."""
        return result.usable and bool(result.slots) and self._tail_error is None

    def _raise_missing(self, index: int, available: int) -> None:
        tail = f" (decoding stopped: {_why(self._tail_error)})" if self._tail_error else ""
        if available == 0:
            raise VideoDecodeError(self.path, f"no decodable frame{tail}")
        raise VideoTooShortError(
            self.path,
            f"frame {index} not decodable: the container says {self.info.num_frames} frames "
            f"({self.info.frame_count_source}) but only {available} decode{tail}",
            available,
        )

    def verified_num_frames(self) -> int:
        """The number of frames that really decode: the container's count when its last frame decodes (plus
        any frames past it), else what a decode from the start finds. Costs a seek and the decoding of the
        last group of pictures when the container is right; a full decode when it is not.

        Raises:
            VideoDecodeError: not a single frame decodes.
        """
        last = self.info.num_frames - 1
        try:
            result = _Decoded({}, usable=False)
            if self._can_seek(last):
                result = self._decode([last], seek=True, to_end=True)
            if not result.usable or not self._clean_end(result):
                result = self._decode([last], seek=False, to_end=True)
        except _DECODE_ERRORS as e:
            raise VideoDecodeError(self.path, f"corrupt stream: {_why(e)}") from None
        if not result.slots:
            self._raise_missing(last, 0)
        return int(result.slots)  # type: ignore[arg-type]

    def read_all(self) -> np.ndarray:
        """Decode every frame, in presentation order (the naive baseline of the benchmark; tests).

        Returns:
            [num_decoded, H, W, 3] uint8.
        """
        if self._used:
            self._reopen()
        try:
            frames = [self._to_rgb(f) for f, _ in self._frames()]
        except _DECODE_ERRORS as e:
            raise VideoDecodeError(self.path, f"corrupt stream: {_why(e)}") from None
        if not frames:
            raise VideoTooShortError(self.path, f"no decodable frame ({_why(self._tail_error)})", 0)
        return np.stack(frames)


def read_image(path: str, *, max_pixels: int = MAX_FRAME_PIXELS) -> np.ndarray:
    """Decode a still image (JPEG, PNG, ...) to RGB uint8 [H, W, 3].

    Args:
        path: the image file.
        max_pixels: larger images are refused.

    Raises:
        VideoDecodeError: missing, empty, too large or corrupt.
    """
    path = str(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        codec = stream.codec_context
        if codec is None:
            raise VideoDecodeError(path, "no decoder for its image format")
        if codec.width * codec.height > max_pixels:
            raise VideoDecodeError(
                path,
                f"an image of {codec.width}x{codec.height} exceeds the limit of {max_pixels / 1e6:.1f} "
                f"megapixels",
            )
        frame = next(container.decode(stream), None)
        if frame is None:
            raise VideoDecodeError(path, "no decodable image")
        return frame.to_ndarray(format="rgb24")  # [H, W, 3]
    except _DECODE_ERRORS as e:
        raise VideoDecodeError(path, f"corrupt image: {_why(e)}") from None
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

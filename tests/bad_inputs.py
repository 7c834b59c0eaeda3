"""A corpus of hostile and unusual inputs, generated at test time (nothing big is committed).

Videos that must be skipped with a reason, videos that are unusual but valid (variable frame rate, a late
start, AV1), index files and configs that must be refused naming the file and the line or key, and
checkpoints with bad values.
"""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from data_helpers import smooth_frames


def encode(
    path: Path,
    frames: np.ndarray | list[av.VideoFrame],
    *,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    codec: str = "libx264",
    options: dict[str, str] | None = None,
    container_format: str | None = None,
) -> Path:
    """Encode RGB frames [T, H, W, 3] (or ready YUV frames) at 30 fps, with explicit timestamps (``pts`` in
    ``time_base`` units) when given."""
    if isinstance(frames, np.ndarray):
        frames = [av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24") for rgb in frames]
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height = frames[0].width, frames[0].height
        stream.pix_fmt = "yuv420p"
        stream.options = dict(options or {})
        if time_base is not None:
            stream.time_base = time_base
            stream.codec_context.time_base = time_base
        for i, frame in enumerate(frames):
            frame.pts = pts[i] if pts is not None else i
            if time_base is not None:
                frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decode_all(path: Path) -> list[tuple[float, np.ndarray]]:
    """(presentation time in seconds from the stream start, RGB frame) of every frame, plain PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = stream.start_time or 0
        return [
            (float((f.pts - start) * f.time_base), f.to_ndarray(format="rgb24"))
            for f in container.decode(stream)
        ]


def vfr_video(path: Path, num_frames: int = 90) -> Path:
    """Variable frame rate: frames last 50, 20, 20, 50, 20, 20 ... ms (mp4 or mkv by the suffix)."""
    durations = [50 if i % 3 == 0 else 20 for i in range(num_frames)]
    pts = np.concatenate([[0], np.cumsum(durations)[:-1]]).astype(int).tolist()
    frames = smooth_frames(num_frames, 48, 64, seed=21)
    return encode(path, frames, pts=pts, time_base=Fraction(1, 1000))


def late_start_video(path: Path, start_seconds: int = 10, num_frames: int = 90) -> Path:
    """A constant-rate stream whose first timestamp is ``start_seconds`` (as cut recordings have)."""
    pts = [start_seconds * 30 + i for i in range(num_frames)]
    return encode(path, smooth_frames(num_frames, 48, 64, seed=22), pts=pts, time_base=Fraction(1, 30))


def av1_video(path: Path, num_frames: int = 90) -> Path:
    """AV1 in Matroska (decoded by libdav1d, which ignores a change of ``skip_frame`` after it opens)."""
    return encode(
        path, smooth_frames(num_frames, 64, 64, seed=23), codec="libsvtav1", options={"preset": "12"}
    )


def mpeg4_avi(path: Path, num_frames: int = 60) -> Path:
    return encode(path, smooth_frames(num_frames, 48, 64, seed=24), codec="mpeg4")


def raw_h264(path: Path, num_frames: int = 60) -> Path:
    """An H.264 elementary stream (no container: no timestamps, no seeking)."""
    return encode(path, smooth_frames(num_frames, 48, 64, seed=25), container_format="h264")


def damaged_middle(path: Path, num_frames: int = 60) -> Path:
    """An mp4 whose frame data has 200 random bytes overwritten (the index is intact)."""
    encode(path, smooth_frames(num_frames, 48, 64, seed=26), options={"g": "12"})
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(1)
    for i in rng.integers(2000, len(data) - 2000, 200):
        data[i] = int(rng.integers(0, 256))
    path.write_bytes(bytes(data))
    return path


def unknown_codec_avi(path: Path) -> Path:
    """An AVI whose fourcc (ZZZZ) no decoder knows: the stream has no codec context."""
    data = mpeg4_avi(path.with_suffix(".tmp.avi")).read_bytes()
    path.with_suffix(".tmp.avi").unlink()
    path.write_bytes(data.replace(b"FMP4", b"ZZZZ"))
    return path


def lying_avi(path: Path, claimed: int = 1_000_000) -> Path:
    """An AVI of 60 frames whose headers (avih dwTotalFrames, strh dwLength) claim ``claimed`` frames."""
    data = bytearray(mpeg4_avi(path.with_suffix(".tmp.avi")).read_bytes())
    path.with_suffix(".tmp.avi").unlink()
    avih = data.find(b"avih")
    data[avih + 24 : avih + 28] = struct.pack("<I", claimed)
    strh = data.find(b"strh")
    data[strh + 40 : strh + 44] = struct.pack("<I", claimed)
    path.write_bytes(bytes(data))
    return path


def flat_video(path: Path, width: int, height: int, num_frames: int = 2) -> Path:
    """``num_frames`` flat frames of ``width`` x ``height``, made in YUV directly (fast at any size)."""
    frames = []
    for i in range(num_frames):
        frame = av.VideoFrame(width, height, "yuv420p")
        for k, plane in enumerate(frame.planes):
            np.frombuffer(plane, np.uint8)[:] = 60 + 40 * k + i
        frames.append(frame)
    return encode(path, frames, options={"preset": "ultrafast"})


def huge_frame_video(path: Path, side: int = 8192) -> Path:
    """A small file (~200 kB) of two ``side`` x ``side`` flat frames: gigabytes once decoded at full size."""
    return flat_video(path, side, side)


def bad_videos(root: Path) -> dict[str, tuple[Path | str, str]]:
    """Files that must be skipped: name -> (path, a phrase the skip reason holds)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "a_folder.mp4").mkdir(exist_ok=True)
    (root / "zero.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("not a video at all, just some text that is long enough " * 4)
    (root / "noise.avi").write_bytes(np.random.default_rng(5).integers(0, 256, 30000, np.uint8).tobytes())
    return {
        "no_decoder": (unknown_codec_avi(root / "zzzz.avi"), "no decoder"),
        "nul_byte": (str(root / "bad\x00name.mp4"), "NUL byte"),
        "folder": (root / "a_folder.mp4", "a folder"),
        "empty": (root / "zero.mp4", "empty file"),
        "text": (root / "text.mp4", "cannot open"),
        "noise": (root / "noise.avi", "cannot open"),
        "missing": (root / "missing.mp4", "missing file"),
        "huge_frames": (huge_frame_video(root / "huge.mp4"), "exceed the decoding limit"),
        "long_name": (str(root / ("x" * 5000 + ".mp4")), "unreadable"),
    }


def poisoned_state(state: dict[str, torch.Tensor], key: str, kind: str) -> dict[str, torch.Tensor]:
    """A copy of ``state`` with tensor ``key`` holding a NaN (``kind="nan"``), an infinity (``"inf"``) or
    cast to int32 (``"int32"``)."""
    state = dict(state)
    value = state[key].clone()
    if kind == "int32":
        state[key] = value.to(torch.int32)
    else:
        value.view(-1)[3] = float(kind)
        state[key] = value
    return state

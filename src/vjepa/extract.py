"""``vjepa extract``: videos or images -> frozen-encoder features on disk.

Each video is cut into windows of ``frames`` frames taken every ``frame_step`` source frames; windows
start every ``stride`` frames (default: one window span, no overlap), and when the last window stops short
of the end one more window is aligned to the last frame. A video shorter than one window gives one window
padded with its last frame (as the official loaders). Each window is one clip ``[3, T, S, S]``:

- ``crop="center"``: short side to ``int(S * 256 / 224)``, centre crop ``S`` (the official one-view eval);
- ``crop="full"``: the whole frame resized to ``S x S`` (aspect not kept).

Output, one file per input (its path relative to the inputs' common folder, suffix replaced):

- videos: ``features`` ``[W, N, D]`` tokens (``N = (T / tubelet) * (S / patch)^2``, time-major, then rows,
  then columns) or ``[W, D]`` with ``--pooled`` (mean over tokens), and ``frame_indices`` ``[W, T]``;
- images (each repeated ``frames`` times along time): ``features`` ``[N, D]`` or ``[D]``.

As ``.safetensors`` (both tensors in one file) or ``.npy`` (``<name>.npy`` and ``<name>.frames.npy``), plus
``manifest.json`` describing the encoder, the grid and every file written or failed.

Windows are planned on the frames that really decode (`VideoReader.verified_num_frames`), not on the
container's claim; frames are shrunk while decoding to the size the crop needs. A file that cannot be
decoded is recorded in the manifest's ``failed`` and the other files go on.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from vjepa.checkpoint import EncoderKey
from vjepa.data.decode import VideoReader, read_image
from vjepa.data.errors import VideoDecodeError
from vjepa.data.inputs import list_inputs, output_names
from vjepa.data.sampling import ClipConfig, MediaKind
from vjepa.data.transforms import CropBox, EvalViewSpec, crop_resize, eval_views, normalize
from vjepa.data.workers import iterate_loader, worker_context
from vjepa.errors import VjepaError, shown
from vjepa.frozen_encoder import load_frozen_encoder
from vjepa.io import FEATURES_FORMAT, atomic_write, write_json, write_safetensors
from vjepa.models.encoder import VideoEncoder
from vjepa.precision import PrecisionChoice
from vjepa.runtime import Runtime, log_precision, session

CropMode = Literal["center", "full"]
OutputFormat = Literal["safetensors", "npy"]


@dataclass
class ExtractSpec(ClipConfig):
    """How inputs become clips and what is written (the clip's fields: :class:`ClipConfig`).

    Args:
        num_frames: frames per clip T (images are repeated T times).
        frame_step: source frames between clip frames.
        resolution: clip side S.
        kind: ``video`` or ``image``.
        stride: source frames between window starts (None: ``num_frames * frame_step``, no overlap).
        crop: ``center`` or ``full`` (see the module docstring).
        pooled: write the mean over tokens instead of every token.
        format: ``safetensors`` or ``npy``.
        batch_size: clips per encoder forward.
        precision: ``auto`` (bf16 autocast where bf16 is native and faster, else fp32), ``fp32`` or ``bf16``.
        num_workers: decoding worker processes.
    """

    kind: MediaKind = "video"
    stride: int | None = None
    crop: CropMode = "center"
    pooled: bool = False
    format: OutputFormat = "safetensors"
    batch_size: int = 8
    precision: PrecisionChoice = "auto"
    num_workers: int = 0

    def __post_init__(self) -> None:
        for name in ("num_frames", "frame_step", "resolution", "batch_size"):
            if getattr(self, name) < 1:
                raise VjepaError(
                    f"{name} (--{name.replace('_', '-')}) must be >= 1, got {getattr(self, name)}"
                )
        if self.stride is not None and self.stride < 1:
            raise VjepaError(f"stride (--stride) must be >= 1, got {self.stride}")
        if self.num_workers < 0:
            raise VjepaError(f"num_workers (--num-workers) must be >= 0, got {self.num_workers}")
        super().__post_init__()

    @property
    def decode_short_side(self) -> int:
        """The short side frames are shrunk to while decoding: what the crop resizes to (``center``:
        ``int(S * 256 / 224)``; ``full``: ``S``)."""
        return int(self.resolution * 256 / 224) if self.crop == "center" else self.resolution

    @property
    def span(self) -> int:
        """Source frames one window covers."""
        return (self.num_frames - 1) * self.frame_step + 1


def window_indices(num_frames: int, spec: ExtractSpec) -> np.ndarray:
    """Frame indices ``[W, T]`` of every window of a video of ``num_frames`` frames."""
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    offsets = np.arange(spec.num_frames) * spec.frame_step  # [T]
    if num_frames <= spec.span:
        return np.minimum(offsets, num_frames - 1)[None]  # one window, padded with the last frame
    stride = spec.stride or spec.num_frames * spec.frame_step
    starts = list(range(0, num_frames - spec.span + 1, stride))
    if starts[-1] + spec.span < num_frames:
        starts.append(num_frames - spec.span)  # cover the tail
    return np.asarray(starts)[:, None] + offsets[None]


def load_clip_frames(path: str, indices: np.ndarray | None, spec: ExtractSpec) -> Tensor:
    """Decode and transform one window (or one image when ``indices`` is None) to ``[3, T, S, S]``."""
    if indices is None:
        frames = read_image(path)[None]  # [1, H, W, 3]
    else:
        with VideoReader(path, max_short_side=spec.decode_short_side) as reader:
            frames = reader.read(indices)  # [T, H, W, 3]
    s = spec.resolution
    if spec.crop == "center":
        clip = eval_views(frames, EvalViewSpec(s, 1))[0]  # [3, t, S, S]
    else:
        h, w = frames.shape[1:3]
        clip = normalize(crop_resize(frames, CropBox(0, 0, h, w), s))  # [3, t, S, S]
    if indices is None:
        clip = clip.expand(-1, spec.num_frames, -1, -1)
    return clip


@dataclass(frozen=True)
class _Item:
    file: int
    window: int
    indices: np.ndarray | None


class _Windows(Dataset):
    """One item per window (or image); a decoding failure yields ``None`` instead of a clip."""

    def __init__(self, files: Sequence[str], items: Sequence[_Item], spec: ExtractSpec) -> None:
        self.files = files
        self.items = items
        self.spec = spec

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[_Item, Tensor | None, str]:
        item = self.items[i]
        try:
            return item, load_clip_frames(self.files[item.file], item.indices, self.spec), ""
        except VideoDecodeError as err:
            return item, None, err.reason


def _collate(batch: list[tuple[_Item, Tensor | None, str]]) -> list[tuple[_Item, Tensor | None, str]]:
    return batch


@dataclass
class ExtractReport:
    """What an extraction wrote.

    Args:
        written: output files, relative to the output folder.
        failed: ``{input file: reason}`` for inputs that could not be decoded.
        manifest: the manifest's path.
        precision: the resolved precision and why (:meth:`vjepa.precision.PrecisionDecision.as_dict`).
    """

    written: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    manifest: Path | None = None
    precision: dict | None = None


def extract_features(
    encoder: VideoEncoder,
    files: Sequence[str],
    out_dir: str | Path,
    spec: ExtractSpec,
    *,
    runtime: Runtime | None = None,
    encoder_info: dict | None = None,
) -> ExtractReport:
    """Encode every window of every file and write one feature file per input (see the module docstring).

    Args:
        encoder: the frozen encoder (on ``runtime.device``).
        files: input files (videos or images, per ``spec.kind``).
        out_dir: output folder.
        spec: windows, transform and output settings.
        runtime: rank, device and precision (default: this process on the encoder's device, precision
            ``spec.precision``); each rank takes every world_size-th file.
        encoder_info: what identifies the encoder, for the manifest.
    """
    runtime = (runtime or Runtime(next(encoder.parameters()).device)).resolved(spec.precision)
    log_precision(runtime, runtime.decision)  # type: ignore[arg-type]
    out_dir = Path(out_dir)
    names = output_names(files)
    report = ExtractReport(precision=runtime.decision.as_dict())  # type: ignore[union-attr]
    plan = plan_windows(files, runtime.share(len(files)), spec, report.failed)
    loader = DataLoader(
        _Windows(files, plan.items, spec),
        batch_size=spec.batch_size,
        collate_fn=_collate,
        num_workers=spec.num_workers,
        multiprocessing_context=worker_context() if spec.num_workers > 0 else None,
    )
    pending: dict[int, list[Tensor | None]] = {}  # file -> its windows' features so far
    batches = math.ceil(len(plan.items) / spec.batch_size)
    for batch in runtime.track(iterate_loader(loader), batches, "extracting", unit="batch"):
        for item, clip, reason in batch:
            if clip is None:
                report.failed[files[item.file]] = reason
        for item, feat in _encode(encoder, batch, spec, runtime):
            pending.setdefault(item.file, [None] * plan.windows_of[item.file])[item.window] = feat
        for f in sorted(pending):
            parts = pending[f]
            if files[f] in report.failed:
                del pending[f]
            elif all(p is not None for p in parts):
                feats_f = torch.stack(parts)  # type: ignore[arg-type]  # [W, ...]
                report.written += _write(out_dir, names[f], feats_f, plan.frame_indices.get(f), spec)
                del pending[f]
    report.manifest = _write_manifest(
        out_dir, files, names, spec, encoder, encoder_info or {}, report, runtime
    )
    return report


@dataclass
class WindowPlan:
    """The windows this rank encodes.

    Args:
        items: one per window (or image), file by file.
        windows_of: ``{file: number of windows}``.
        frame_indices: ``{file: [W, T] frame indices}`` of every video.
    """

    items: list[_Item] = field(default_factory=list)
    windows_of: dict[int, int] = field(default_factory=dict)
    frame_indices: dict[int, np.ndarray] = field(default_factory=dict)


def plan_windows(
    files: Sequence[str], mine: Sequence[int], spec: ExtractSpec, failed: dict[str, str]
) -> WindowPlan:
    """The windows of the files ``mine`` (positions in ``files``); a video that cannot be opened goes into
    ``failed`` (``{file: reason}``)."""
    plan = WindowPlan()
    for f in mine:
        if spec.kind == "image":
            plan.items.append(_Item(f, 0, None))
            plan.windows_of[f] = 1
            continue
        try:
            with VideoReader(files[f]) as reader:
                n = reader.verified_num_frames()
        except VideoDecodeError as err:
            failed[files[f]] = err.reason
            continue
        w = window_indices(n, spec)  # [W, T]
        plan.windows_of[f] = len(w)
        plan.frame_indices[f] = w
        plan.items += [_Item(f, k, w[k]) for k in range(len(w))]
    return plan


def _encode(
    encoder: VideoEncoder, batch: list[tuple[_Item, Tensor | None, str]], spec: ExtractSpec, runtime: Runtime
) -> list[tuple[_Item, Tensor]]:
    """``(item, features)`` of the decoded clips of a batch: ``[N, D]`` tokens, or ``[D]`` when pooled."""
    good = [(item, clip) for item, clip, _ in batch if clip is not None]
    if not good:
        return []
    clips = torch.stack([c for _, c in good]).to(runtime.device)  # [b, 3, T, S, S]
    with torch.no_grad(), runtime.autocast():
        tokens = encoder(clips)  # [b, N, D]
    tokens = tokens.float()
    feats = (tokens.mean(dim=1) if spec.pooled else tokens).cpu()  # [b, D] or [b, N, D]
    return [(item, feat) for (item, _), feat in zip(good, feats, strict=True)]


def _write(
    out_dir: Path, name: str, feats: Tensor, indices: np.ndarray | None, spec: ExtractSpec
) -> list[str]:
    """Write one input's features ``[W, ...]`` (images: the window axis dropped)."""
    if spec.kind == "image":
        feats = feats[0]  # [N, D] or [D]
    tensors = {"features": feats.contiguous()}
    if indices is not None:
        tensors["frame_indices"] = torch.from_numpy(np.ascontiguousarray(indices, dtype=np.int64))  # [W, T]
    if spec.format == "safetensors":
        path = out_dir / f"{name}.safetensors"
        write_safetensors(path, tensors, FEATURES_FORMAT.metadata())
        return [str(path.relative_to(out_dir))]
    written = []
    for key, value in tensors.items():
        path = out_dir / (f"{name}.npy" if key == "features" else f"{name}.frames.npy")
        atomic_write(path, functools.partial(_save_npy, value.numpy()))
        written.append(str(path.relative_to(out_dir)))
    return written


def _save_npy(array: np.ndarray, path: Path) -> None:
    with open(path, "wb") as fh:  # a file object: np.save would append ".npy" to a path
        np.save(fh, array)


def _write_manifest(
    out_dir: Path,
    files: Sequence[str],
    names: Sequence[str],
    spec: ExtractSpec,
    encoder: VideoEncoder,
    encoder_info: dict,
    report: ExtractReport,
    runtime: Runtime,
) -> Path:
    written, failed = report.written, report.failed
    if runtime.distributed:
        gathered: list = [None] * runtime.world_size
        dist.all_gather_object(gathered, (written, failed))
        written = sorted(w for ws, _ in gathered for w in ws)
        failed = {k: v for _, fs in gathered for k, v in fs.items()}
    path = out_dir / "manifest.json"
    if runtime.is_main:
        c = encoder.config
        grid = c.token_grid(spec.num_frames, spec.resolution)
        shape = "[D]" if spec.pooled else "[N, D]"
        manifest = {
            "encoder": {
                **encoder_info,
                "embed_dim": c.embed_dim,
                "patch_size": c.patch_size,
                "tubelet_size": c.tubelet_size,
            },
            "spec": asdict(spec),
            "precision": report.precision,
            "token_grid": {
                "time": grid.depth,
                "height": grid.height,
                "width": grid.width,
                "tokens": grid.num_tokens,
            },
            "token_order": "time-major, then row, then column: n = t * H' * W' + h * W' + w",
            "features_shape": shape if spec.kind == "image" else f"[W, {shape[1:]}",
            "inputs": {f: n for f, n in zip(files, names, strict=True)},
            "written": written,
            "failed": failed,
        }
        write_json(path, manifest, FEATURES_FORMAT, default=str)
    return path


def run_extract(
    inputs: Sequence[str],
    out_dir: str,
    *,
    checkpoint: str,
    which: EncoderKey,
    spec: ExtractSpec,
    num_heads: int | None = None,
    device: str = "auto",
    threads: int | None = None,
) -> ExtractReport:
    """``vjepa extract``: load the chosen encoder of ``checkpoint`` and extract ``inputs`` into ``out_dir``
    (``threads``: CPU intra-op threads, None for the default of :func:`vjepa.runtime.configure_threads`)."""
    with session(device, threads, spec.precision) as runtime:
        return _run_extract(inputs, out_dir, checkpoint, which, spec, num_heads, runtime)


def _run_extract(
    inputs: Sequence[str],
    out_dir: str,
    checkpoint: str,
    which: EncoderKey,
    spec: ExtractSpec,
    num_heads: int | None,
    runtime: Runtime,
) -> ExtractReport:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise VjepaError(f"{shown(out)}: exists and is not a folder (--out names the output folder)")
    files = list_inputs(inputs, spec.kind)
    frozen = load_frozen_encoder(
        checkpoint, which, num_heads=num_heads, num_frames=spec.num_frames, resolution=spec.resolution,
        names=("--num-frames", "--resolution"), device=runtime.device,
    )  # fmt: skip
    info = {"checkpoint": frozen.source, "which": which, "fingerprint": frozen.fingerprint}
    runtime.log(
        f"extracting {len(files)} {spec.kind} file(s) with the {which} of {frozen.source} -> {out_dir}"
    )
    report = extract_features(frozen.encoder, files, out_dir, spec, runtime=runtime, encoder_info=info)
    runtime.log(f"wrote {len(report.written)} file(s) and {report.manifest}; {len(report.failed)} failed")
    for path, reason in report.failed.items():
        runtime.log(f"  failed: {shown(path)}: {reason}")
    return report

"""``vjepa masks``: draw what a pretraining config's masks hide, over the frames of a real video."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vjepa.data.decode import VideoReader
from vjepa.data.sampling import ClipSpec, eval_clip_indices
from vjepa.data.synthetic import SyntheticSpec, default_object_size, render_video
from vjepa.data.transforms import center_crop, resize_short_side
from vjepa.figures import overlay, plot_masks, save_gif, token_states
from vjepa.masks import make_mask_generators

if TYPE_CHECKING:  # the config is loaded by the caller; nothing of pretrain runs here
    from vjepa.pretrain.config import PretrainConfig


def clip_frames(
    video: str | Path | None, num_frames: int, frame_step: int, resolution: int, seed: int = 0
) -> np.ndarray:
    """``[num_frames, resolution, resolution, 3]`` uint8: the first clip of ``video`` (evaluation sampling,
    short side resized to ``resolution``, centre crop), or a built-in synthetic video when ``video`` is None."""
    if video is None:
        object_size = default_object_size(resolution)
        spec = SyntheticSpec(num_frames=num_frames, resolution=resolution, object_size=object_size)
        return render_video(spec, 0, 0, np.random.default_rng(seed))
    with VideoReader(str(video), max_short_side=resolution) as reader:  # VideoDecodeError names a bad file
        spec = ClipSpec(num_frames=num_frames, frame_step=frame_step)
        indices = eval_clip_indices(reader.verified_num_frames(), spec)[0]
        raw = reader.read(indices)  # [T, H, W, 3] uint8
    crop = center_crop(resize_short_side(raw, resolution), resolution)  # [T, 3, S, S] uint8
    return crop.permute(0, 2, 3, 1).contiguous().numpy()


def draw_config_masks(
    config: PretrainConfig,
    config_name: str,
    out: str | Path,
    *,
    video: str | Path | None = None,
    gif: bool = False,
    seed: int = 0,
) -> list[Path]:
    """Draw the masks of a pretraining config (loaded from the recipe or YAML ``config_name``) for one batch,
    over sample 0.

    The whole batch is drawn (``data.batch_size`` samples) because the official truncation to the batch
    minimum changes what each sample keeps.

    Returns:
        the PNG, and one GIF per mask setting when ``gif``.
    """
    d = config.data
    encoder = config.encoder_config()
    grid, tubelet, patch = encoder.grid, encoder.tubelet_size, encoder.patch_size
    frames = clip_frames(video, d.num_frames, d.frame_step, d.resolution, seed)
    rng = np.random.default_rng(seed)
    states = {}
    masks = config.masks
    for i, gen in enumerate(make_mask_generators(masks.kind, grid, list(masks.settings), masks.truncation)):
        pair = gen(d.batch_size, rng)
        states[f"{config.masks.kind} {i}"] = token_states(
            pair.context[0].numpy(), pair.target[0].numpy(), grid
        )
    out = Path(out)
    source = Path(video).name if video else "a synthetic video"
    title = f"{config_name}: masks of sample 0 of a batch of {d.batch_size} over {source} (red: predicted; grey: dropped)"
    written = [plot_masks(frames, states, out, tubelet_size=tubelet, patch_size=patch, title=title)]
    if gif:
        for name, st in states.items():
            gif_path = out.with_name(f"{out.stem}_{name.replace(' ', '_')}.gif")
            written.append(save_gif(overlay(frames, st, tubelet, patch), gif_path))
    return written

"""``vjepa masks``: draw what a pretraining config's masks hide, over the frames of a real video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vjepa.figures import overlay, plot_masks, save_gif, token_states


def clip_frames(
    video: str | Path | None, frames: int, frame_step: int, size: int, seed: int = 0
) -> np.ndarray:
    """``[frames, size, size, 3]`` uint8: the first clip of ``video`` (evaluation sampling, short side resized
    to ``size``, centre crop), or a built-in synthetic video when ``video`` is None."""
    if video is None:
        from vjepa.data.synthetic import SyntheticSpec, render_video

        spec = SyntheticSpec(
            num_frames=frames, resolution=size, object_size=max(4, min(size // 2, size * 26 // 64))
        )
        return render_video(spec, 0, 0, np.random.default_rng(seed))
    from vjepa.data.decode import VideoReader
    from vjepa.data.sampling import ClipSpec, eval_clip_indices

    with VideoReader(str(video), max_short_side=size) as reader:  # VideoDecodeError names a bad file
        spec = ClipSpec(num_frames=frames, frame_step=frame_step)
        indices = eval_clip_indices(reader.verified_num_frames(), spec)[0]
        raw = torch.from_numpy(reader.read(indices)).permute(0, 3, 1, 2).float()  # [T, 3, H, W]
    h, w = raw.shape[-2:]
    scale = size / min(h, w)
    raw = F.interpolate(raw, size=(max(size, round(h * scale)), max(size, round(w * scale))), mode="bilinear")
    top, left = (raw.shape[-2] - size) // 2, (raw.shape[-1] - size) // 2
    crop = raw[..., top : top + size, left : left + size]
    return crop.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def draw_config_masks(
    config_name: str,
    overrides: list[str],
    out: str | Path,
    *,
    video: str | Path | None = None,
    gif: bool = False,
    seed: int = 0,
) -> list[Path]:
    """Draw the masks of a pretraining config (recipe name or YAML) for one batch, over sample 0.

    The whole batch is drawn (``data.batch_size`` samples) because the official truncation to the batch
    minimum changes what each sample keeps.

    Returns:
        the PNG, and one GIF per mask setting when ``gif``.
    """
    from vjepa.config import load_config
    from vjepa.pretrain.config import PretrainConfig, resolve_recipe
    from vjepa.pretrain.data import build_mask_generators

    config = load_config(PretrainConfig, resolve_recipe(config_name), overrides)
    d = config.data
    encoder = config.encoder_config()
    grid, tubelet, patch = encoder.grid, encoder.tubelet_size, encoder.patch_size
    frames = clip_frames(video, d.num_frames, d.frame_step, d.resolution, seed)
    rng = np.random.default_rng(seed)
    states = {}
    for i, gen in enumerate(build_mask_generators(config.masks, grid)):
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

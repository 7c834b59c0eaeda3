"""``vjepa extract`` on mp4 files made in the test: token-grid shapes, windows, and equality with calling
the encoder directly on the same decoded frames."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vjepa.checkpoint import save_pretrained
from vjepa.cli import main
from vjepa.extract import ExtractSpec, window_indices
from vjepa.models import VideoEncoder
from vjepa.models.registry import EncoderConfig

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1, 1)


def write_mp4(path: Path, frames: np.ndarray, fps: int = 10) -> None:
    """Lossless-ish H.264 through PyAV."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv444p"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def decode_all(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def to_clip(frames: np.ndarray) -> torch.Tensor:  # [T, H, W, 3] uint8 -> [3, T, H, W] normalized
    x = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255
    return (x - MEAN) / STD


@pytest.fixture(scope="module")
def setup_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    rng = np.random.default_rng(0)
    videos = root / "videos"
    (videos / "sub").mkdir(parents=True)
    lengths = {"a.mp4": 40, "sub/b.mp4": 10}
    for name, n in lengths.items():
        write_mp4(videos / name, rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))
    torch.manual_seed(0)
    cfg = EncoderConfig(embed_dim=32, depth=2, num_heads=4, num_frames=8, resolution=32)
    encoder = VideoEncoder(cfg).eval()
    ckpt = save_pretrained(root / "ckpt", {"target_encoder": encoder, "encoder": VideoEncoder(cfg)}, cfg)
    return root, videos, ckpt, encoder


def test_windows_cover_the_video():
    spec = ExtractSpec(num_frames=8, frame_step=2, stride=8)  # a window spans 15 frames
    w = window_indices(40, spec)
    assert w[:, 0].tolist() == [0, 8, 16, 24, 25]  # the last window is aligned to the end
    assert w[-1, -1] == 39 and np.all(np.diff(w, axis=1) == 2)
    short = window_indices(10, spec)
    assert short.tolist() == [[0, 2, 4, 6, 8, 9, 9, 9]]  # padded with the last frame
    assert window_indices(15, spec).shape == (1, 8)
    assert window_indices(40, ExtractSpec(num_frames=8, frame_step=2)).shape == (3, 8)  # default stride = 16


@pytest.mark.parametrize("workers", [0, 2])
def test_extract_cli_tokens_match_the_encoder(setup_files, tmp_path, workers):
    root, videos, ckpt, encoder = setup_files
    out = tmp_path / "feats"
    argv = [
        "extract",
        str(videos),
        "--checkpoint",
        str(ckpt),
        "--encoder",
        "target_encoder",
        "--out",
        str(out),
    ]
    argv += ["--frames", "8", "--frame-step", "2", "--stride", "8", "--resolution", "32", "--crop", "full"]
    argv += ["--batch-size", "3", "--device", "cpu", "--precision", "fp32"]  # exact tokens: fp32
    argv += ["--num-workers", str(workers)]
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["token_grid"] == {"time": 4, "height": 2, "width": 2, "tokens": 16}
    assert manifest["precision"]["precision"] == "fp32" and manifest["precision"]["reason"]
    assert sorted(manifest["written"]) == ["a.safetensors", "sub/b.safetensors"]
    spec = ExtractSpec(num_frames=8, frame_step=2, stride=8)
    for name, n_windows in (("a", 5), ("sub/b", 1)):
        saved = load_file(out / f"{name}.safetensors")
        feats, indices = saved["features"], saved["frame_indices"]
        assert feats.shape == (n_windows, 16, 32)  # [W, N = 4 x 2 x 2, D]
        frames = decode_all(videos / f"{name}.mp4")
        assert indices.tolist() == window_indices(len(frames), spec).tolist()
        clips = torch.stack([to_clip(frames[idx.numpy()]) for idx in indices])  # [W, 3, T, H, W]
        with torch.no_grad():
            expected = encoder(clips)
        torch.testing.assert_close(feats, expected, atol=1e-5, rtol=1e-4)


def test_extract_pooled_npy_and_images(setup_files, tmp_path):
    root, videos, ckpt, encoder = setup_files
    out = tmp_path / "pooled"
    argv = [
        "extract",
        str(videos / "a.mp4"),
        "--checkpoint",
        str(ckpt),
        "--encoder",
        "encoder",
        "--out",
        str(out),
    ]
    argv += ["--frames", "8", "--frame-step", "2", "--resolution", "32", "--pooled", "--format", "npy"]
    with pytest.raises(SystemExit) as done:
        main(argv + ["--device", "cpu"])
    assert done.value.code == 0
    feats = np.load(out / "a.npy")
    assert feats.shape == (3, 32) and np.load(out / "a.frames.npy").shape == (3, 8)

    import matplotlib.image

    images = tmp_path / "images"
    images.mkdir()
    pixels = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    matplotlib.image.imsave(images / "x.png", pixels)
    out = tmp_path / "img"
    argv = [
        "extract",
        str(images),
        "--kind",
        "image",
        "--checkpoint",
        str(ckpt),
        "--encoder",
        "target_encoder",
    ]
    argv += ["--out", str(out), "--frames", "8", "--resolution", "32", "--crop", "full", "--device", "cpu"]
    argv += ["--precision", "fp32"]  # compared with the fp32 encoder below
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    tokens = load_file(out / "x.safetensors")["features"]
    assert tokens.shape == (16, 32)  # [N, D]: the image repeated 8 times -> 4 x 2 x 2 tokens
    with torch.no_grad():
        expected = encoder(to_clip(pixels[None]).expand(-1, 8, -1, -1)[None])[
            0
        ]  # also = encoder(image [1,3,H,W])
    torch.testing.assert_close(tokens, expected, atol=1e-5, rtol=1e-4)


def test_extract_requires_an_explicit_encoder_choice(setup_files, tmp_path):
    _, videos, ckpt, _ = setup_files
    with pytest.raises(SystemExit) as done:
        main(["extract", str(videos), "--checkpoint", str(ckpt), "--out", str(tmp_path)])
    assert done.value.code == 2

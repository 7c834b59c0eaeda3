"""Data layer: video files in, augmented clips out.

Modules (import from them directly; this package imports nothing so that importing it stays cheap):

- `index`: CSV / class-folder / path-list indexes, `mix_indexes` with frequency weights.
- `decode`: the only module that uses PyAV: `VideoReader`, `read_image`, `write_video`.
- `sampling`: `ClipSpec` and the official clip index rule (pure).
- `transforms`: `CropSpec`, `EvalViewSpec`, random resized crop / flip / normalization, evaluation views.
- `datasets`: `VideoClipDataset`, `EvalVideoDataset`, `ImageDataset`, samples and `collate_samples`.
- `clip_cache`: `ClipCache`, decoded videos on disk read back memory-mapped; `open_clip_cache` decides.
- `clip_frames`: a draw's clip frames, decoded or from the clip cache (the same either way).
- `synthetic`: the built-in procedural motion/appearance dataset.
- `synthetic_clips`: `SyntheticClipDataset`, training clips of synthetic videos rendered in memory.
- `inputs`: a command's input files from CSV indexes, folders, path lists or single files.
- `loader`: `DrawSampler`, `DataStream`, `make_loader` (workers, ranks, resume, failure accounting).
- `workers`: how loader workers start (from a fork server, not by forking a threaded process).
- `draws`, `errors`: draw keys and per-draw seeding; bad-file errors, policy and tracker.
"""

"""Weights in other projects' formats: Hugging Face ``transformers`` V-JEPA 2 folders (:mod:`vjepa.interop.hf`).

Official V-JEPA / V-JEPA 2 checkpoint files share our module names and are read by :mod:`vjepa.checkpoint`.
Nothing here imports ``transformers``.
"""

"""vjepa: V-JEPA video encoders (pretraining, frozen evaluation, feature extraction)."""

__version__ = "0.1.0"

"""V-JEPA pretraining: the objective, the schedules, the setup (``build_trainer``), the step, the loop (``fit``)
and its checkpoints.

from vjepa.pretrain import load_pretrain_config, pretrain
config = load_pretrain_config("tiny_cpu", ["optimization.epochs=2"])
pretrain(config, "runs/tiny")                 # or resume=True to continue the run in that directory
"""

from vjepa.pretrain.config import PretrainConfig, load_pretrain_config, load_run_config, shipped_recipes
from vjepa.pretrain.loop import FitResult, fit, pretrain
from vjepa.pretrain.objective import JEPAObjective, ObjectiveOutput
from vjepa.pretrain.schedules import Schedules
from vjepa.pretrain.setup import Trainer, build_trainer
from vjepa.pretrain.step import StepResult, TrainingDiverged, train_step

__all__ = [
    "FitResult",
    "JEPAObjective",
    "ObjectiveOutput",
    "PretrainConfig",
    "Schedules",
    "StepResult",
    "Trainer",
    "TrainingDiverged",
    "build_trainer",
    "fit",
    "load_pretrain_config",
    "load_run_config",
    "pretrain",
    "shipped_recipes",
    "train_step",
]

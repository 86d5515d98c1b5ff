"""Minimum eval scores, in InferenceX's thresholds shape, and how one is chosen.

Resolution as InferenceX's ``utils/evals/validate_scores.py``: ``models.<model-prefix>.<task>``,
then ``default.<task>``, then ``MIN_SCORE``. ``DEFAULTS`` are InferenceX's floors (its
``utils/evals/thresholds.yaml``) plus the local arithmetic task's.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from ixhpc.evals.tasks import LOCAL_TASK
from ixhpc.recipe import EvalThresholds
from ixhpc.yamlmodel import ConfigError, load_yaml, located_errors

MIN_SCORE = 0.85  # validate_scores.py --min-score default: a task no file names
DEFAULTS = EvalThresholds(
    default={"gsm8k": 0.90, "gpqa_diamond_cot_n_shot": 0.30, LOCAL_TASK: 0.90},
    models={"dsr1": {"gsm8k": 0.91}, "dsv4": {"gsm8k": 0.91}, "glm5": {"gsm8k": 0.94},
            "glm5.1": {"gsm8k": 0.93}, "gptoss": {"gsm8k": 0.91}, "kimik2.5": {"gsm8k": 0.90},
            "minimaxm2.5": {"gsm8k": 0.92}, "qwen3.5": {"gsm8k": 0.94}},
)


def load(inline: EvalThresholds | None, file: str | None, base: Path) -> EvalThresholds:
    """A recipe's ``ixhpc.eval`` thresholds: inline (``thresholds``), else a file
    (``thresholds-file``, relative to the recipe's directory), else ixhpc's defaults. A bad file
    is a located config error."""
    if inline is not None:
        return inline
    if file is None:
        return DEFAULTS
    path = Path(file).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise ConfigError([f"{path}: eval thresholds file not found"])
    doc = load_yaml(path, what="eval thresholds (default: {task: score}, models: {prefix: {task: score}})")
    try:
        return EvalThresholds.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(located_errors(doc, (), exc, EvalThresholds)) from None


def resolve(th: EvalThresholds, model_prefix: str, task: str) -> float:
    return th.models.get(model_prefix, {}).get(task, th.default.get(task, MIN_SCORE))

"""The local arithmetic task: its data and an lm-eval task file, written into a run directory.

The task is InferenceX's gsm8k task (its prompt asking for ``#### [number]``, strict and
flexible extraction, 5-shot, greedy) over ``ixhpc.evals.problems`` read as local JSON files,
so lm-eval runs it without the Hugging Face hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ixhpc import atomic
from ixhpc.evals import problems

LOCAL_TASK = "ixhpc_arith"
SEED = 20
TRAIN, TEST = 40, 200   # few-shot pool, problems asked
# InferenceX's gsm8k prompt: the model ends with "#### [number]" (strict-match reads it)
PROMPT = ("Question: {{question}}\nEnd your response with the answer on the last line, formatted as: "
          "#### [number]\nAnswer:")


def task_config(train: Path, test: Path) -> dict[str, Any]:
    """InferenceX's gsm8k task over local JSON files (``dataset_path: json``)."""
    return {
        "task": LOCAL_TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"train": str(train), "test": str(test)}},
        "output_type": "generate_until",
        "training_split": "train", "fewshot_split": "train", "test_split": "test",
        "doc_to_text": PROMPT,
        "doc_to_target": "{{answer}}",
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                         "ignore_case": True, "ignore_punctuation": False,
                         "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"]}],
        "generation_kwargs": {"until": ["</s>", "<|im_end|>"], "do_sample": False, "temperature": 0.0},
        "repeats": 1,
        "num_fewshot": 5,
        "filter_list": [
            {"name": "strict-match", "filter": [
                {"function": "regex", "group_select": -1, "regex_pattern": "#### (\\-?[0-9\\.\\,]+)"},
                {"function": "take_first"}]},
            {"name": "flexible-extract", "filter": [
                {"function": "regex", "group_select": -1, "regex_pattern": "(-?[$0-9.,]{2,})|(-?[0-9]+)"},
                {"function": "take_first"}]},
        ],
        "metadata": {"version": 1.0},
    }


def write_local_task(directory: Path, seen_as: Path) -> Path:
    """The task file and its data under ``directory`` (lm-eval's ``--include_path``), which the
    job sees as ``seen_as`` (a run is rendered under a temporary name, then renamed)."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = list(problems.problems(SEED, TRAIN + TEST))
    data = {"train": rows[:TRAIN], "test": rows[TRAIN:]}
    for split, split_rows in data.items():
        atomic.write_text(directory / f"{split}.jsonl", problems.jsonl(iter(split_rows)))
    path = directory / f"{LOCAL_TASK}.yaml"
    config = task_config(seen_as / "train.jsonl", seen_as / "test.jsonl")
    atomic.write_text(path, yaml.safe_dump(config, sort_keys=False))
    return path


"""Cluster profiles: where a recipe runs (partitions, accounts, GPUs per node, container runtime).

A recipe entry names a `runner` label (InferenceX's labels from runners.yaml: ``gb200``,
``mi355x``, ``mi355x-disagg``, ... plus ixhpc's ``gb200-multinode``/``mi355x-multinode`` for
multi-node recipes of its own); a profile says which of its partitions serves which labels.

Built-ins: ``gb200-nvl72``, ``mi355x`` and ``local`` (the project's local Slurm cluster, see
ixhpc.local_cluster). User profiles come from a YAML file, the first found of: the
``--profiles FILE`` flag, ``$IXHPC_PROFILES``, ``~/.config/ixhpc/clusters.yaml``. It maps
profile names to profiles; an entry may ``extends: <name>`` (a built-in or another user
profile) and override fields. A user entry named like a built-in extends that built-in.
An invalid profile file is a located error (exit 2), never a warning.
"""

# No `from __future__ import annotations` here: pydantic would compile and evaluate every field's
# annotation string when the module is imported (models are defined at import).

import os
import platform
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, model_validator

from ixhpc.yamlmodel import (
    ConfigError,
    GpuCount,
    Located,
    Minutes,
    Mount,
    Str,
    StrictModel,
    Text,
    found,
    load_yaml,
    located_errors,
)

ENV_VAR = "IXHPC_PROFILES"
DEFAULT_PATH = Path("~/.config/ixhpc/clusters.yaml")


def _expandable(value: str) -> str:
    """A path the submitting user's `~` expands in (`~nosuchuser/...` would reach the job as is)."""
    if value.startswith("~") and os.path.expanduser(value).startswith("~"):
        user = value[1:].split("/", 1)[0]
        why = f"no user {user!r}" if user else "no home directory"
        raise ValueError(f"expected a path whose '~' expands ({why}), found {found(value)}")
    return value


def _mountable(value: str) -> str:
    """A directory mounted into containers at the same path (src:dst:ro): no ',', ':' or blanks."""
    if any(c in ",:" or c.isspace() for c in value):
        raise ValueError(f"expected a directory usable as a container mount (no ',', ':' or "
                         f"whitespace), found {found(value)}")
    return value


LocalPath = Annotated[Text, AfterValidator(_expandable)]
MountDir = Annotated[LocalPath, AfterValidator(_mountable)]


class Partition(StrictModel):
    name: Text
    runners: list[Text] = []               # runner labels this partition serves
    gpus_per_node: GpuCount | None = None  # None: the profile's gpus-per-node
    nodes: Text | None = None              # informative node list, e.g. gb[1-4]


class ClusterProfile(StrictModel):
    name: Text
    description: Str = ""
    partitions: Annotated[list[Partition], Field(min_length=1)]
    account: Text | None = None
    qos: Text | None = None
    reservation: Text | None = None
    exclude: list[Text] = []               # nodes never to use
    time_limit: Minutes = 240              # when a recipe sets none
    gpus_per_node: GpuCount
    arch: Literal["aarch64", "x86_64"]
    gpu_visibility_env: list[Text] = ["CUDA_VISIBLE_DEVICES"]
    nvlink_domain_nodes: GpuCount | None = None
    container_runtime: Literal["pyxis", "enroot", "none"]
    squash_cache: LocalPath | None = None  # where imported container images (.sqsh) are kept
    default_mounts: list[Mount] = []
    model_dir: MountDir | None = None
    extra_sbatch: dict[Text, Str] = {}     # option -> value ("" for a flag), without "--"
    use_segment: bool = False              # --segment=<nodes> keeps a job in one NVLink domain
    use_exclusive: bool = True
    use_gpus_per_node: bool = True
    merge_partition: Text | None = None    # where `submit --merge` runs (a CPU partition); None: the job's
    # Jobs run ixhpc's engine stand-ins for the real engines' commands (ixhpc.standins): only
    # the built-in `local` profile sets it, where no GPU engine exists.
    engine_standins: bool = False
    # GPU power during each benchmark (ixhpc.job.power): a sampler step per node reads it with
    # nvidia-smi or DCGM (NVIDIA), amd-smi (AMD), or the simulated engines' gauge (local); none: off
    power_source: Literal["none", "nvidia-smi", "dcgm", "amd-smi", "sim"] = "none"
    # an InferenceX checkout: script mode by default (`--inferencex` overrides; docs/inferencex-scripts.md)
    inferencex_checkout: LocalPath | None = None
    # srt-slurm recipe directories that InferenceX's `CONFIG_FILE=recipes/...` settings are looked
    # up in, in order (`--srt-recipes` adds to them; ixhpc.srtslurm.config_file)
    srt_recipes: list[LocalPath] = []
    # the image lm-eval runs in (accuracy evals, docs/evals.md); None: the point's own image
    eval_image: Text | None = None
    # the Python that runs lm-eval there; None: python3 (in a container), the job's (runtime none)
    eval_python: Text | None = None
    # wheels of the pinned lm-eval on shared storage (`python -m ixhpc.evals wheelhouse
    # DIR`): installed offline into a venv of the job when the eval's Python lacks lm_eval
    eval_wheelhouse: MountDir | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "ClusterProfile":
        names = [p.name for p in self.partitions]
        if len(set(names)) != len(names):
            raise ValueError(f"expected distinct partition names, found {names}")
        seen: dict[str, str] = {}
        for p in self.partitions:
            for label in p.runners:
                if label in seen:
                    raise ValueError(f"expected each runner label in one partition, found "
                                     f"'{label}' in both {seen[label]} and {p.name}")
                seen[label] = p.name
        if self.use_segment and not self.nvlink_domain_nodes:
            raise ValueError("expected nvlink-domain-nodes when use-segment is true, found none")
        return self

    @property
    def runners(self) -> list[str]:
        return [label for p in self.partitions for label in p.runners]

    def partition_for(self, runner: str) -> Partition | None:
        return next((p for p in self.partitions if runner in p.runners), None)

    def gpus_on(self, partition: Partition) -> int:
        return partition.gpus_per_node or self.gpus_per_node


# Built-ins, written as a user would write them in clusters.yaml (and validated the same way).
BUILTINS: dict[str, dict[str, Any]] = {
    "gb200-nvl72": {
        "description": "GB200 NVL72 racks: 4 GPUs per node, 18 nodes per NVLink domain",
        "partitions": [{"name": "gb200", "runners": ["gb200", "gb200-multinode"]}],
        "gpus-per-node": 4,
        "arch": "aarch64",
        "nvlink-domain-nodes": 18,
        "container-runtime": "pyxis",
        "squash-cache": "~/.cache/ixhpc/squash",
        "use-segment": True,
        "power-source": "nvidia-smi",
    },
    "mi355x": {
        "description": "MI355X nodes: 8 GPUs per node, ROCm device visibility",
        "partitions": [{"name": "mi355x",
                        "runners": ["mi355x", "mi355x-disagg", "mi355x-multinode"]}],
        "gpus-per-node": 8,
        "arch": "x86_64",
        "gpu-visibility-env": ["HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"],
        "container-runtime": "pyxis",
        "squash-cache": "~/.cache/ixhpc/squash",
        "power-source": "amd-smi",
    },
    "local": {
        "description": "the project's local Slurm cluster (ixhpc local-cluster): processes on this host",
        "partitions": [
            {"name": "gb200", "runners": ["gb200", "gb200-multinode"], "gpus-per-node": 4,
             "nodes": "gb[1-4]"},
            {"name": "mi355x", "runners": ["mi355x", "mi355x-disagg", "mi355x-multinode"],
             "gpus-per-node": 8, "nodes": "mi[1-2]"},
            {"name": "debug", "gpus-per-node": 4, "nodes": "gb[1-4],mi[1-2]"},
        ],
        "merge-partition": "debug",
        "gpus-per-node": 4,
        "arch": "aarch64" if platform.machine() in ("aarch64", "arm64") else "x86_64",
        "time-limit": 30,
        "container-runtime": "none",
        "engine-standins": True,
        "power-source": "sim",
    },
}


def profiles_path(profiles_file: str | Path | None = None) -> Path | None:
    """The user profile file in effect: flag, then $IXHPC_PROFILES, then the default path."""
    for given in (profiles_file, os.environ.get(ENV_VAR)):
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise ConfigError(f"profile file {path} does not exist")
            return path
    default = DEFAULT_PATH.expanduser()
    return default if default.is_file() else None


def load_profiles(profiles_file: str | Path | None = None) -> dict[str, ClusterProfile]:
    """Built-in profiles with the user's file merged over them."""
    raw: dict[str, dict[str, Any]] = {k: dict(v) for k, v in BUILTINS.items()}
    doc: Located | None = None
    path = profiles_path(profiles_file)
    if path is not None:
        doc = load_yaml(path, "a mapping of profile names to cluster profiles")
        raw.update(_merge_user(doc, raw))
    profiles: dict[str, ClusterProfile] = {}
    errors: list[str] = []
    for name, fields in raw.items():
        try:
            profiles[name] = ClusterProfile.model_validate({**fields, "name": name})
        except ValidationError as exc:
            if doc is None or name not in doc.data:
                raise  # a built-in that does not validate is a bug, not user input
            errors.extend(located_errors(doc, (name,), exc, ClusterProfile))
    if errors:
        raise ConfigError(errors)
    return profiles


def _merge_user(doc: Located, builtins: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Resolve `extends:` chains of the user's entries into flat field mappings."""
    user = doc.data
    errors: list[str] = []
    for name, fields in user.items():
        if not isinstance(name, str):
            errors.append(doc.error((name,), f"expected a profile name (a string), found {found(name)}"))
        elif not isinstance(fields, dict):
            errors.append(doc.error((name,), f"expected a mapping (a cluster profile), found "
                                    f"{'null' if fields is None else type(fields).__name__}"))
    if errors:
        raise ConfigError(errors)

    resolved: dict[str, dict[str, Any]] = {}

    def resolve(name: str, chain: tuple[str, ...]) -> dict[str, Any]:
        if name in resolved:
            return resolved[name]
        fields = dict(user[name])
        base_name = fields.pop("extends", name if name in builtins else None)
        base: dict[str, Any] = {}
        if base_name is not None:
            if not isinstance(base_name, str) or base_name in chain:
                what = "a cycle" if base_name in chain else repr(base_name)
                raise ConfigError([doc.error((name, "extends"),
                                             f"expected the name of another profile, found {what}")])
            if base_name in user and base_name != name:
                base = resolve(base_name, chain + (name,))
            elif base_name in builtins:
                base = builtins[base_name]
            else:
                known = sorted(set(builtins) | set(user))
                raise ConfigError([doc.error((name, "extends"), f"expected one of {known}, "
                                             f"found {found(base_name)}")])
        resolved[name] = {**base, **fields}
        return resolved[name]

    return {name: resolve(name, ()) for name in user}


def get_profile(name: str, profiles_file: str | Path | None = None) -> ClusterProfile:
    profiles = load_profiles(profiles_file)
    if name not in profiles:
        raise ConfigError(f"unknown cluster profile '{name}' (known: {', '.join(sorted(profiles))})")
    return profiles[name]


def profile_for_runner(runner: str, profiles_file: str | Path | None = None,
                       profiles: dict[str, ClusterProfile] | None = None) -> ClusterProfile | None:
    """The first profile serving a runner label, real clusters before `local`; None if none."""
    profiles = profiles if profiles is not None else load_profiles(profiles_file)
    ordered = sorted(profiles.values(), key=lambda p: p.name == "local")
    return next((p for p in ordered if p.partition_for(runner)), None)

"""Cluster profiles: built-ins, user files merged over them, located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ixhpc.errors import UserError
from ixhpc.profiles import ENV_VAR, get_profile, load_profiles, profile_for_runner
from ixhpc.yamlmodel import ConfigError


@pytest.fixture(autouse=True)
def no_user_profiles(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests see only the files they write, never the developer's ~/.config/ixhpc."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_builtins() -> None:
    p = load_profiles()
    gb, mi, local = p["gb200-nvl72"], p["mi355x"], p["local"]
    assert (gb.arch, gb.gpus_per_node, gb.nvlink_domain_nodes, gb.use_segment, gb.container_runtime) == \
        ("aarch64", 4, 18, True, "pyxis")
    assert (mi.arch, mi.gpus_per_node) == ("x86_64", 8)
    assert set(mi.gpu_visibility_env) == {"HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"}
    assert local.container_runtime == "none" and local.account is None
    assert {x.name: local.gpus_on(x) for x in local.partitions} == {"gb200": 4, "mi355x": 8, "debug": 4}


def test_local_serves_reference_and_demo_runner_labels() -> None:
    local = get_profile("local")
    for label in ("gb200", "gb200-multinode", "mi355x", "mi355x-disagg", "mi355x-multinode"):
        part = local.partition_for(label)
        assert part is not None and part.name == label.split("-")[0]
    assert local.partition_for("b200") is None


def test_profile_for_runner_prefers_real_clusters() -> None:
    assert profile_for_runner("gb200").name == "gb200-nvl72"  # type: ignore[union-attr]
    assert profile_for_runner("mi355x-disagg").name == "mi355x"  # type: ignore[union-attr]
    assert profile_for_runner("h100") is None


def test_user_file_extends_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "clusters.yaml"
    f.write_text(
        "eos:\n"
        "  extends: gb200-nvl72\n"
        "  account: perf\n"
        "  partitions: [{name: batch, runners: [gb200]}]\n"
        "  exclude: [node013]\n"
        "eos-debug:\n"
        "  extends: eos\n"
        "  qos: debug\n"
        "mi355x:\n"            # same name as a built-in: merged over it
        "  account: amd\n")
    p = load_profiles(f)
    assert p["eos"].account == "perf" and p["eos"].gpus_per_node == 4 and p["eos"].use_segment
    assert p["eos"].partitions[0].name == "batch" and p["eos"].exclude == ["node013"]
    assert p["eos-debug"].qos == "debug" and p["eos-debug"].account == "perf"
    assert p["mi355x"].account == "amd" and p["mi355x"].gpus_per_node == 8
    assert "local" in p


def test_env_var_and_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("mine:\n  extends: local\n  time-limit: 5\n")
    monkeypatch.setenv(ENV_VAR, str(f))
    assert get_profile("mine").time_limit == 5
    monkeypatch.delenv(ENV_VAR)
    default = tmp_path / "home" / ".config" / "ixhpc" / "clusters.yaml"
    default.parent.mkdir(parents=True)
    default.write_text("other:\n  extends: local\n")
    assert get_profile("other").name == "other"
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing.yaml"))
    with pytest.raises(UserError, match="does not exist"):
        load_profiles()


@pytest.mark.parametrize("text,line,fragment", [
    ("x:\n  extends: local\n  gpus-per-node: 0\n", 3, "x.gpus-per-node: expected a value > 0"),
    ("x:\n  extends: local\n  container-runtime: docker\n", 3, "expected one of 'pyxis', 'enroot' or 'none'"),
    ("x:\n  extends: local\n  use-segmnt: true\n", 3, "did you mean 'use-segment'?"),
    ("x:\n  extends: nowhere\n", 2, "x.extends: expected one of"),
    ("x:\n  extends: y\ny:\n  extends: x\n", 4, "y.extends: expected the name of another profile, found a cycle"),
    ("x:\n  arch: aarch64\n", 1, "x.partitions: expected this required key"),
    ("x:\n  extends: local\n  use-segment: true\n", 1, "expected nvlink-domain-nodes"),
    ("x:\n  extends: local\n  default-mounts: [nocolon]\n", 3, "expected src:dst[:flags]"),
    ("x: 3\n", 1, "x: expected a mapping"),
    ("- a\n", 1, "found a list"),
    ("x:\n\textends: local\n", 2, "tab character"),
])
def test_invalid_profile_is_a_located_error(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    f = tmp_path / "clusters.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_profiles(f)
    assert exc.value.exit_code == 2
    hit = [e for e in exc.value.errors if fragment in e]
    assert hit and hit[0].startswith(f"{f}:{line}: "), exc.value.errors


def test_unknown_profile_name() -> None:
    with pytest.raises(UserError, match="unknown cluster profile 'nope'"):
        get_profile("nope")

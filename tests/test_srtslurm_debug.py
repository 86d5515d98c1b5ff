"""`ixhpc debug` of an srt-slurm recipe with a custom benchmark (docs/srt-slurm.md): the shell's
`ixhpc_bench C` runs the recipe's command as the job does and records the step in the point's
HDF5 (exit status, log, wall time), on the local cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_debug import _leave, _open_debug_shell, terminal  # noqa: F401  (the tmux fixture)
from test_srtslurm_runs import CUSTOM

from ixhpc.results import store


@pytest.mark.cluster
def test_debug_shell_runs_and_records_a_custom_benchmark(terminal, slurm, tmp_path):  # noqa: F811
    out_file = tmp_path / "custom-out.txt"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(CUSTOM.replace("OUT_FILE", str(out_file)).replace("EXIT_STATUS", "0"))
    node, job, cwd = _open_debug_shell(terminal, recipe, tmp_path / "runs", "--cluster", "local")
    for role in ("etcd", "nats", "prefill-0", "decode-0", "frontend-0"):
        terminal.run(f"ixhpc_start {role}", rf"started {role} \(pid")
    terminal.run("ixhpc_health && echo ALL-HEALTHY", r"ALL-HEALTHY", 120)
    terminal.run("ixhpc_bench 4", r"custom benchmark at concurrency 4 exited with status 0", 120)
    assert '"id": "tiny-model"' in out_file.read_text()
    (h5,) = (cwd / "results").glob("*.h5")
    point = store.read(h5)
    assert point.custom is not None and point.custom["exit_status"] == 0 and point.verdict == "valid"
    terminal.run("ixhpc_stop; echo STOPPED", r"STOPPED", 60)
    _leave(terminal, job, slurm)
    assert Path(point.custom["log"]).exists()

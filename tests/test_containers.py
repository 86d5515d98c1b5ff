"""Container runtime seam: exact pyxis/enroot command lines, image references, and the squash
cache driven through a stand-in `enroot` executable (a real subprocess, real locks/renames)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ixhpc import containers, shell
from ixhpc.containers import ContainerSpec
from ixhpc.errors import UserError

SECRET = "hf_s3cr3t-value-never-in-argv"
IMAGE = "nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:0.8.1.post1"

# A stand-in for enroot: logs each call (one line, appended atomically), checks that imports
# get private ENROOT_* dirs, and emulates import / list / create / start.
FAKE_ENROOT = r"""#!/bin/sh
printf '%s\n' "$*" >> "$FAKE_ENROOT_LOG"
cmd="$1"; shift
case "$cmd" in
import)
    for d in "$ENROOT_RUNTIME_PATH" "$ENROOT_CACHE_PATH" "$ENROOT_TEMP_PATH"; do
        [ -d "$d" ] || { echo "no private enroot dir: '$d'" >&2; exit 3; }
    done
    out=
    while [ $# -gt 0 ]; do case "$1" in -o) out="$2"; shift 2;; *) shift;; esac; done
    sleep "${FAKE_ENROOT_SLEEP:-0}"
    if [ -n "$FAKE_ENROOT_FAIL" ]; then
        echo "[INFO] Querying registry for permission grant" >&2
        echo "[ERROR] URL https://nvcr.io/proxy_auth returned error code: 401 Unauthorized" >&2
        exit 1
    fi
    printf 'hsqs fake squashfs for %s' "$FAKE_ENROOT_LABEL" > "$out" ;;
list)
    cat "$FAKE_ENROOT_STATE" 2>/dev/null; exit 0 ;;
create)
    name=
    while [ $# -gt 0 ]; do case "$1" in --name) name="$2"; shift 2;; --) shift; break;; *) break;; esac; done
    [ -f "$1" ] || { echo "no image $1" >&2; exit 4; }
    sleep "${FAKE_ENROOT_SLEEP:-0}"
    echo "$name" >> "$FAKE_ENROOT_STATE" ;;
start)
    rc=
    while [ $# -gt 0 ]; do case "$1" in --) shift; break;; --rc) rc="$2"; shift 2;; --mount|--env) shift 2;;
        *) shift;; esac; done
    shift   # the container name
    # --rc replaces the image's command script; that one (enroot import's /etc/rc) runs the
    # image's ENTRYPOINT around the command: here one that exports a variable.
    [ -n "$rc" ] && exec sh "$rc" "$@"
    exec sh -c 'IMAGE_ENTRYPOINT=ran; export IMAGE_ENTRYPOINT; exec "$@"' image-rc "$@" ;;
esac
"""


@pytest.fixture
def fake_enroot(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "enroot"
    exe.write_text(FAKE_ENROOT)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "enroot.log"
    monkeypatch.setenv("FAKE_ENROOT_LOG", str(log))
    monkeypatch.setenv("FAKE_ENROOT_STATE", str(tmp_path / "enroot.state"))
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    return exe, log


def _calls(log: Path, verb: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith(verb)] if log.exists() else []


def _spec(**over) -> ContainerSpec:
    return ContainerSpec(**{"image": IMAGE, "mounts": ["/lustre/models:/models:ro", "/scratch/run:/run"],
                            "env_names": ["HF_TOKEN", "IXHPC_RUN"], "workdir": "/opt/ixhpc-src",
                            "name": "ixhpc-job", **over})


# ---------------------------------------------------------------------------- command lines


def test_pyxis_srun_flags_exactly_as_pyxis_spells_them():
    rt = containers.runtime("pyxis")
    assert rt.srun_args(_spec(remap_root=True, writable=True)) == [
        "--container-image=nvcr.io#nvidia/ai-dynamo/tensorrtllm-runtime:0.8.1.post1",
        "--container-mounts=/lustre/models:/models:ro,/scratch/run:/run",
        "--container-workdir=/opt/ixhpc-src",
        "--container-name=ixhpc-job",
        "--container-env=HF_TOKEN,IXHPC_RUN",
        "--no-container-mount-home",
        "--container-remap-root",
        "--container-writable",
    ]
    minimal = ContainerSpec(image="lmsysorg/sglang:v0.5.9-rocm700-mi35x", mount_home=True,
                            mounts=["/a:/b:ro+rprivate"])
    assert rt.srun_args(minimal) == ["--container-image=lmsysorg/sglang:v0.5.9-rocm700-mi35x",
                                     "--container-mounts=/a:/b:ro+rprivate", "--container-mount-home"]
    assert rt.wrap(minimal, ["python3", "-V"]) == ["python3", "-V"]


def test_pyxis_uses_the_cached_squash_file_when_the_profile_has_a_cache(tmp_path):
    rt = containers.runtime("pyxis", squash_cache=str(tmp_path), arch="aarch64")
    path = containers.squash_path(IMAGE, "aarch64", tmp_path)
    assert rt.srun_args(_spec())[0] == f"--container-image={path}"
    assert rt.prepare(_spec()) == ["python", "-m", "ixhpc.containers", "import", IMAGE,
                                   "--arch", "aarch64", "--cache", str(tmp_path)]
    assert containers.runtime("pyxis").prepare(_spec()) is None


def test_enroot_wrap_command_line(tmp_path):
    rt = containers.runtime("enroot", squash_cache=str(tmp_path), arch="x86_64")
    sqsh = str(containers.squash_path(IMAGE, "x86_64", tmp_path))
    argv = rt.wrap(_spec(), ["python3", "-m", "sglang.launch_server"])
    assert rt.srun_args(_spec()) == []
    assert argv[:5] == ["env", "ENROOT_MOUNT_HOME=n", "ENROOT_REMAP_ROOT=n", "ENROOT_ROOTFS_WRITABLE=n", "bash"]
    assert argv[7:] == [
        "ixhpc-enroot", "ixhpc-job", sqsh, "image", "8",
        "--mount", "/lustre/models:/models:none:x-create=auto,rbind,ro",
        "--mount", "/scratch/run:/run:none:x-create=auto,rbind",
        "--env", "HF_TOKEN", "--env", "IXHPC_RUN",
        "sh", "-c", 'cd "$1" && shift && exec "$@"', "ixhpc-workdir", "/opt/ixhpc-src",
        "python3", "-m", "sglang.launch_server"]
    loose = rt.wrap(_spec(remap_root=True, writable=True, mount_home=True), ["true"])
    assert loose[:4] == ["env", "ENROOT_MOUNT_HOME=y", "ENROOT_REMAP_ROOT=y", "ENROOT_ROOTFS_WRITABLE=y"]


def test_none_runtime_runs_argv_on_the_host():
    rt = containers.runtime("none")
    assert (rt.srun_args(_spec()), rt.wrap(_spec(), ["python", "-m", "x"]), rt.prepare(_spec())) \
        == ([], ["python", "-m", "x"], None)
    with pytest.raises(UserError, match="unknown container runtime 'docker'"):
        containers.runtime("docker")


@pytest.mark.skipif(shutil.which("flock") is None, reason="needs util-linux flock")
def test_enroot_steps_on_one_node_create_the_container_once_and_run_in_workdir(tmp_path, fake_enroot):
    _, log = fake_enroot
    sqsh = tmp_path / "img.sqsh"
    sqsh.write_bytes(b"hsqs")
    workdir = tmp_path / "work"
    workdir.mkdir()
    spec = ContainerSpec(image=str(sqsh), env_names=["HF_TOKEN"], workdir=str(workdir))
    argv = containers.runtime("enroot").wrap(spec, ["sh", "-c", 'echo "$PWD $HF_TOKEN"'])
    env = {**os.environ, "SLURM_JOB_ID": "4242", "TMPDIR": str(tmp_path), "FAKE_ENROOT_SLEEP": "0.3"}
    procs = [subprocess.Popen(["bash", "-c", shell.command(argv)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert {o for o, _ in outs} == {f"{workdir} {SECRET}\n"}   # value came by environment only
    creates = _calls(log, "create")
    assert len(creates) == 1 and "ixhpc-4242-img-" in creates[0]
    assert len(_calls(log, "start")) == 3


@pytest.mark.skipif(shutil.which("flock") is None, reason="needs util-linux flock")
def test_enroot_skips_the_image_entrypoint_with_a_command_script_of_its_own(tmp_path, fake_enroot):
    _, log = fake_enroot
    sqsh = tmp_path / "img.sqsh"
    sqsh.write_bytes(b"hsqs")
    rt = containers.runtime("enroot")
    probe = ["sh", "-c", 'echo "${IMAGE_ENTRYPOINT:-skipped}"']
    env = {**os.environ, "SLURM_JOB_ID": "77", "TMPDIR": str(tmp_path)}

    def run(spec: ContainerSpec) -> str:
        res = subprocess.run(["bash", "-c", shell.command(rt.wrap(spec, probe))], env=env, text=True,
                             capture_output=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return res.stdout

    skip = ContainerSpec(image=str(sqsh), entrypoint=False)
    assert rt.wrap(skip, probe)[7:11] == ["ixhpc-enroot", rt.wrap(skip, probe)[8], str(sqsh), "skip"]
    assert run(skip) == "skipped\n" and run(skip) == "skipped\n"
    rc_file = tmp_path / f"ixhpc-77-{rt.wrap(skip, probe)[8]}.no-entrypoint.rc"
    assert rc_file.read_text() == containers.NO_ENTRYPOINT_RC + "\n"
    starts = _calls(log, "start")
    assert starts == [f"start --rc {rc_file} -- ixhpc-77-{rt.wrap(skip, probe)[8]} {' '.join(probe)}"] * 2
    for default in (ContainerSpec(image=str(sqsh)), ContainerSpec(image=str(sqsh), entrypoint=True)):
        assert run(default) == "ran\n"
    assert not [c for c in _calls(log, "start")[2:] if "--rc" in c]
    cli = subprocess.run([sys.executable, "-m", "ixhpc.containers", "srun-args", str(sqsh), "--runtime", "enroot",
                          "--no-entrypoint"], capture_output=True, text=True, check=True)
    assert " skip 0 COMMAND..." in cli.stdout


def test_secrets_pass_by_name_and_never_appear_in_any_argv(tmp_path, fake_enroot):
    assert os.environ["HF_TOKEN"] == SECRET
    spec = _spec(image=str(tmp_path / "x.sqsh"))
    for name in containers.RUNTIMES:
        rt = containers.runtime(name, squash_cache=str(tmp_path))
        argv = [*rt.srun_args(spec), *rt.wrap(spec, ["true"]), *(rt.prepare(spec) or [])]
        assert not [a for a in argv if SECRET in a], name
    with pytest.raises(ValueError, match="NAME"):
        ContainerSpec(image=IMAGE, env_names=[f"HF_TOKEN={SECRET}"])


def test_bad_specs_are_rejected():
    for bad in (dict(mounts=["/a:/b,/c:/d"]), dict(mounts=["/only-src"]), dict(mounts=["/a:/b:r o"]),
                dict(name="a b")):
        with pytest.raises(ValueError):
            ContainerSpec(**{"image": IMAGE, **bad})
    # The image is checked by the runtimes that use it (the host runtime ignores it).
    for image in ("ubuntu; rm -rf /", "-rf", "$(touch /tmp/x)", "Upper/Case"):
        spec = ContainerSpec(image=image)
        assert containers.runtime("none").wrap(spec, ["true"]) == ["true"]
        for name in ("pyxis", "enroot"):
            rt = containers.runtime(name, squash_cache="/cache")
            with pytest.raises(UserError, match="container image"):
                [*rt.srun_args(spec), *rt.wrap(spec, ["true"])]


# ---------------------------------------------------------------------------- references


@pytest.mark.parametrize("ref,uri", [
    ("lmsysorg/sglang:v0.5.9-rocm700-mi35x", "docker://lmsysorg/sglang:v0.5.9-rocm700-mi35x"),
    ("ubuntu", "docker://ubuntu"),
    ("docker.io/library/ubuntu:24.04", "docker://library/ubuntu:24.04"),
    ("nvcr.io/nvidia/tensorrt-llm/release:1.2.0rc6.post3",
     "docker://nvcr.io#nvidia/tensorrt-llm/release:1.2.0rc6.post3"),
    ("nvcr.io#nvidia/tensorrt-llm/release:1.2.0rc6.post3",
     "docker://nvcr.io#nvidia/tensorrt-llm/release:1.2.0rc6.post3"),
    ("ghcr.io/org/engine:nightly", "docker://ghcr.io#org/engine:nightly"),
    ("localhost:5000/team/img", "docker://localhost:5000#team/img"),
    ("rocm/atom@sha256:" + "a" * 64, "docker://rocm/atom@sha256:" + "a" * 64),
    ("nvcr.io/nvidia/x:1.0@sha256:" + "b" * 64, "docker://nvcr.io#nvidia/x@sha256:" + "b" * 64),
    ("docker://nvcr.io#nvidia/x:1", "docker://nvcr.io#nvidia/x:1"),
])
def test_registry_references_become_enroot_uris(ref, uri):
    assert containers.enroot_uri(ref) == uri
    assert containers.pyxis_image(ref) == uri.removeprefix("docker://")


@pytest.mark.parametrize("ref", ["Org/Image:1", "nvcr.io/nvidia/x@sha256:short", "img:bad/tag!", "a b"])
def test_invalid_references_are_refused(ref):
    with pytest.raises(ValueError):
        containers.enroot_uri(ref)


def test_local_squash_files_pass_through():
    assert containers.pyxis_image("/lustre/images/sglang.sqsh") == "/lustre/images/sglang.sqsh"
    assert containers.squash_path("./img.sqsh", "aarch64", "/cache") == Path("img.sqsh")


def test_cache_key_is_per_reference_and_architecture():
    a = containers.squash_name("nvcr.io/nvidia/x:1", "aarch64")
    assert a.startswith("nvcr.io+nvidia+x+1+aarch64+") and a.endswith(".sqsh")
    assert containers.squash_name("nvcr.io#nvidia/x:1", "arm64") == a       # same image, same file
    assert containers.squash_name("nvcr.io/nvidia/x:1", "x86_64") != a
    assert containers.squash_name("nvcr.io/nvidia/x:2", "aarch64") != a
    # two references that sanitize alike still get different files
    assert containers.squash_name("ghcr.io/a/b-c:1", "x86_64") != containers.squash_name("ghcr.io/a/b/c:1", "x86_64")


def test_import_runs_on_a_compute_node_when_the_architecture_differs():
    assert containers.import_command(IMAGE, "arm64", "/cache", partition="gb200", python="py") == [
        "srun", "--nodes=1", "--ntasks=1", "--job-name=ixhpc-image-import", "--partition=gb200",
        "py", "-m", "ixhpc.containers", "import", IMAGE, "--arch", "aarch64", "--cache", "/cache"]
    other = "aarch64" if containers.normalize_arch(None) == "x86_64" else "x86_64"
    assert containers.needs_remote_import(other) and not containers.needs_remote_import(None)


# ---------------------------------------------------------------------------- the squash cache


def _import_cli(cache: Path, exe: Path, label: str, env_extra: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "FAKE_ENROOT_LABEL": label, **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "ixhpc.containers", "import", IMAGE, "--arch",
                             "aarch64", "--cache", str(cache), "--enroot", str(exe)],
                            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_concurrent_imports_run_enroot_once_and_share_one_valid_file(tmp_path, fake_enroot):
    exe, log = fake_enroot
    cache = tmp_path / "cache"
    procs = [_import_cli(cache, exe, f"p{i}", {"FAKE_ENROOT_SLEEP": "0.5"}) for i in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    paths = {o.strip() for o, _ in outs}
    target = containers.squash_path(IMAGE, "aarch64", cache)
    assert paths == {str(target)}
    imports = _calls(log, "import")
    assert len(imports) == 1
    assert imports[0].startswith("import -a aarch64 -o ")
    assert imports[0].endswith(" docker://nvcr.io#nvidia/ai-dynamo/tensorrtllm-runtime:0.8.1.post1")
    assert target.read_bytes().startswith(b"hsqs fake squashfs for p")
    assert sorted(p.name for p in cache.iterdir()) == [target.name, target.name + ".lock"]
    # warm cache: no enroot call at all
    assert containers.ensure_image(IMAGE, "aarch64", cache, enroot=str(exe)) == target
    assert len(_calls(log, "import")) == 1


def test_failed_import_leaves_no_file_and_names_the_image(tmp_path, fake_enroot, monkeypatch):
    exe, log = fake_enroot
    monkeypatch.setenv("FAKE_ENROOT_FAIL", "1")
    cache = tmp_path / "cache"
    with pytest.raises(UserError) as err:
        containers.ensure_image(IMAGE, "aarch64", cache, enroot=str(exe), attempts=2)
    msg = str(err.value)
    assert IMAGE in msg and "aarch64" in msg and "401 Unauthorized" in msg and "2 attempt" in msg
    assert err.value.exit_code == 1
    assert len(_calls(log, "import")) == 2                        # bounded, not forever
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


def test_cli_failure_is_one_line_and_nonzero(tmp_path, fake_enroot):
    exe, _ = fake_enroot
    proc = _import_cli(tmp_path / "cache", exe, "x", {"FAKE_ENROOT_FAIL": "1"})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("ixhpc.containers: error: could not import container image")
    bad = subprocess.run([sys.executable, "-m", "ixhpc.containers", "path", "Bad/Image"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_stale_temp_and_broken_cache_files_are_ignored_and_replaced(tmp_path, fake_enroot):
    exe, log = fake_enroot
    cache = tmp_path / "cache"
    target = containers.squash_path(IMAGE, "aarch64", cache)
    stale = cache / f".{target.name}.killed123.tmp"
    stale.mkdir(parents=True)
    (stale / "image.sqsh").write_bytes(b"hsqs half-written by a killed import")
    target.write_bytes(b"")                                       # a truncated earlier copy
    assert containers.ensure_image(IMAGE, "aarch64", cache, enroot=str(exe)) == target
    assert target.read_bytes().startswith(b"hsqs fake squashfs")
    assert len(_calls(log, "import")) == 1 and not stale.exists()


def test_missing_enroot_and_invalid_local_images_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="'no-such-enroot' not found"):
        containers.ensure_image(IMAGE, "x86_64", tmp_path, enroot="no-such-enroot")
    junk = tmp_path / "junk.sqsh"
    junk.write_bytes(b"not squashfs")
    with pytest.raises(UserError, match="not a squashfs file"):
        containers.ensure_image(str(junk), "x86_64", tmp_path)


def test_every_known_engine_image_converts_to_an_enroot_uri_and_cache_file():
    import yaml

    doc = yaml.safe_load((Path(__file__).resolve().parents[1] / "containers/images.yaml").read_text())
    entries = [e for images in doc["frameworks"].values() for e in images]
    assert len(entries) > 20
    for e in entries:
        assert containers.enroot_uri(e["image"]).startswith("docker://")
        assert f"+{e['arch']}+" in containers.squash_name(e["image"], e["arch"])

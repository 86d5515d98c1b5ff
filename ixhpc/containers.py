"""The container runtime seam: how a job step runs inside an image (pyxis, enroot or none).

Everything that knows about containers lives here, behind one small interface:

* ``ContainerSpec`` says what a step needs (image, mounts, env var NAMES, workdir, ...).
* ``runtime(name)`` returns a ``Runtime`` with ``srun_args(spec)`` (flags added to ``srun``)
  and ``wrap(spec, argv)`` (the command ``srun`` runs). ``pyxis`` puts everything in srun
  flags; ``enroot`` (clusters without pyxis) wraps argv in ``enroot create``/``enroot start``
  with the same semantics (no entrypoint: ``enroot start --rc`` with a command script that
  execs argv alone); ``none`` runs argv on the host (the local test cluster).
* A squash cache: one ``.sqsh`` per image reference AND architecture, imported with
  ``enroot import -a ARCH -o FILE docker://...``, safe when many nodes or jobs import the
  same image at once (lock, re-check, private temp dirs, check, atomic rename).

Secrets (HF_TOKEN, ...) cross into containers by NAME only (``--container-env NAME`` /
``enroot start --env NAME``); their values are never written to argv, scripts or logs.
A recipe's ``env`` does not come this way: its values are an ``env NAME=VALUE`` prefix of the
step's argv (``ixhpc.placement.with_env``), which ``wrap`` runs inside the container as is.
Registry credentials live in enroot's ``$ENROOT_CONFIG_PATH/.credentials`` (netrc format).

``python -m ixhpc.containers import|path|srun-args|import-command`` drives this from a shell.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import platform
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, field_validator

from ixhpc.atomic import umask
from ixhpc.errors import ConfigError, UserError, main_guard

SQUASH_MAGIC = b"hsqs"          # first bytes of every (little-endian) squashfs image
DEFAULT_CACHE = "~/.cache/ixhpc/squash"
IMPORT_ATTEMPTS = 2             # a flaky registry gets one retry, never an endless loop
IMPORT_TIMEOUT = 4 * 3600       # seconds; a 30 GB engine image over a slow link

_ARCH_ALIASES = {"aarch64": "aarch64", "arm64": "aarch64", "x86_64": "x86_64", "amd64": "x86_64"}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MOUNT_FLAGS = re.compile(r"[a-z0-9_=-]+(\+[a-z0-9_=-]+)*\Z")
_BAD_REF_CHARS = re.compile(r"[\s\x00-\x1f\x7f'\"`$;&|<>\\]")


# ---------------------------------------------------------------------------- the spec


class ContainerSpec(BaseModel):
    """What one job step needs from its container (the same for every runtime)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str                      # registry reference, enroot URI, or a .sqsh path (checked
                                    # by the runtimes that use it; `none` ignores it)
    mounts: list[str] = []          # src:dst or src:dst:flags (flags "+"-separated, e.g. ro)
    env_names: list[str] = []       # host variables passed in by name (values never written)
    workdir: str | None = None
    name: str | None = None         # named containers are reused by later steps of the job
    mount_home: bool = False
    remap_root: bool = False
    writable: bool = False
    # the image's entrypoint around the step: None = the site's default, False = not run
    # (pyxis --no-container-entrypoint, as InferenceX's launchers ask), True = run
    entrypoint: bool | None = None

    @field_validator("mounts")
    @classmethod
    def _mounts(cls, v: list[str]) -> list[str]:
        for m in v:
            parse_mount(m)
        return v

    @field_validator("env_names")
    @classmethod
    def _env(cls, v: list[str]) -> list[str]:
        for name in v:
            if not _ENV_NAME.match(name):
                raise ValueError(f"expected an environment variable NAME (its value is passed "
                                 f"from the environment, never written), found {name!r}")
        return list(dict.fromkeys(v))  # keep order, drop repeats

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError(f"expected a container name of letters, digits and _.-, found {v!r}")
        return v


def parse_mount(mount: str) -> tuple[str, str, list[str]]:
    """``src:dst[:flags]`` -> (src, dst, flags). Pyxis separates mounts with "," and flags with
    "+", so neither may appear inside a path."""
    parts = mount.split(":")
    if len(parts) not in (2, 3) or not all(parts[:2]) or "," in mount:
        raise ValueError(f"expected a mount SRC:DST or SRC:DST:FLAGS without commas, found {mount!r}")
    flags = parts[2] if len(parts) == 3 else ""
    if flags and not _MOUNT_FLAGS.match(flags):
        raise ValueError(f"expected mount flags such as ro or ro+rprivate, found {flags!r} in {mount!r}")
    return parts[0], parts[1], flags.split("+") if flags else []


# ---------------------------------------------------------------------------- image references


def check_ref(ref: str) -> None:
    if not ref or ref.startswith("-") or _BAD_REF_CHARS.search(ref):
        raise ValueError(f"expected a container image reference or .sqsh path, found {ref!r}")


def is_local(ref: str) -> bool:
    """A squashfs file on disk (absolute/relative path or *.sqsh), not a registry image."""
    return ref.startswith(("/", "./", "../", "~")) or ref.endswith((".sqsh", ".squashfs"))


def enroot_uri(ref: str) -> str:
    """A registry reference in enroot's form ``docker://[USER@][REGISTRY#]REPO[:TAG|@DIGEST]``.

    ``nvcr.io/nvidia/x:1`` -> ``docker://nvcr.io#nvidia/x:1``; Docker Hub references
    (``lmsysorg/sglang:v1``, ``docker.io/...``) get no registry: enroot's default registry is
    Docker Hub and it adds ``library/`` itself. A digest pins the image, so it wins over a tag.
    """
    check_ref(ref)
    if is_local(ref):
        raise ValueError(f"{ref!r} is a local file, not a registry reference")
    if "://" in ref:
        return ref                                    # docker://, dockerd://, podman:// as given
    if "#" in ref:                                    # already registry#repo
        registry, _, rest = ref.partition("#")
        return f"docker://{registry}#{_repo_ref(rest, ref)}"
    first, slash, rest = ref.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry = "" if first in ("docker.io", "index.docker.io", "registry-1.docker.io") else first
        return f"docker://{registry + '#' if registry else ''}{_repo_ref(rest, ref)}"
    return f"docker://{_repo_ref(ref, ref)}"


def _repo_ref(text: str, whole: str) -> str:
    repo, at, digest = text.partition("@")
    if at and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise ValueError(f"expected a digest @sha256:<64 hex digits> in {whole!r}")
    name, colon, tag = repo.rpartition(":") if ":" in repo.rsplit("/", 1)[-1] else (repo, "", "")
    if not re.fullmatch(r"[a-z0-9]+([._/-][a-z0-9]+|__[a-z0-9]+|-+[a-z0-9]+)*", name):
        raise ValueError(f"expected a lower-case repository name in image {whole!r}, found {name!r}")
    if colon and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag):
        raise ValueError(f"expected a tag of letters, digits and _.- in image {whole!r}, found {tag!r}")
    return f"{name}@{digest}" if at else f"{name}{':' + tag if colon else ''}"


def pyxis_image(ref: str) -> str:
    """What ``--container-image`` takes: a .sqsh path, or the enroot URI without ``docker://``."""
    if is_local(ref):
        return ref
    uri = enroot_uri(ref)
    return uri.removeprefix("docker://")


def normalize_arch(arch: str | None) -> str:
    arch = arch or platform.machine()
    if arch not in _ARCH_ALIASES:
        raise ConfigError(f"unknown architecture {arch!r} (known: aarch64/arm64, x86_64/amd64)")
    return _ARCH_ALIASES[arch]


def squash_name(ref: str, arch: str) -> str:
    """Cache file name: readable sanitized reference + arch + a short hash of both (the hash
    keeps two references that sanitize alike apart)."""
    arch = normalize_arch(arch)
    uri = enroot_uri(ref)
    readable = re.sub(r"[^A-Za-z0-9._-]+", "+", uri.removeprefix("docker://")).strip("+.")[:100]
    digest = hashlib.sha256(f"{uri}\n{arch}".encode()).hexdigest()[:12]
    return f"{readable}+{arch}+{digest}.sqsh"


def squash_path(ref: str, arch: str, cache_dir: str | os.PathLike[str]) -> Path:
    """Where the image lives: the file itself for a local ref, else its cache file."""
    if is_local(ref):
        return Path(ref).expanduser()
    return Path(cache_dir).expanduser() / squash_name(ref, arch)


def is_valid_squash(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(len(SQUASH_MAGIC)) == SQUASH_MAGIC
    except OSError:
        return False


# ---------------------------------------------------------------------------- the squash cache


def ensure_image(ref: str, arch: str | None, cache_dir: str | os.PathLike[str],
                 enroot: str = "enroot", attempts: int = IMPORT_ATTEMPTS,
                 timeout: float = IMPORT_TIMEOUT) -> Path:
    """The valid .sqsh for ``ref`` on ``arch``, imported into the cache unless already there.

    Concurrent callers (steps on many nodes, many jobs, over a shared filesystem) serialize
    on a lock file beside the target: the first imports, the others wait and reuse its file.
    An import writes into a private temp dir (its own ENROOT_RUNTIME_PATH/CACHE_PATH/TEMP_PATH),
    is checked, then renamed over the target in one step, so nobody sees half a file.
    """
    arch = normalize_arch(arch)
    target = squash_path(ref, arch, cache_dir)
    if is_local(ref):
        if not is_valid_squash(target):
            raise UserError(f"container image {ref}: not a squashfs file (missing or no 'hsqs' magic)")
        return target
    if is_valid_squash(target):
        return target                       # fast path: no lock once the cache is warm
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f"{target.name}.lock"):
        if is_valid_squash(target):
            return target                   # another process imported it while we waited
        _remove_stale(target)
        errors: list[str] = []
        for _ in range(max(1, attempts)):
            error = _import_once(ref, arch, target, enroot, timeout)
            if error is None:
                return target
            errors.append(error)
        raise UserError(f"could not import container image {ref} ({enroot_uri(ref)}, {arch}) "
                        f"after {len(errors)} attempt(s): {errors[-1]}")


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _remove_stale(target: Path) -> None:
    """Under the lock nobody else is importing this image, so any temp dir of it is left over
    from a killed import, and an existing target without squashfs magic is a broken file."""
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    if target.exists():
        print(f"ixhpc.containers: replacing invalid cache file {target}", file=sys.stderr)
        target.unlink()


def _import_once(ref: str, arch: str, target: Path, enroot: str, timeout: float) -> str | None:
    """One ``enroot import`` into a private temp dir; None on success, else why it failed."""
    import sh

    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        out = tmp / "image.sqsh"
        env = dict(os.environ)
        for var, sub in (("ENROOT_RUNTIME_PATH", "runtime"), ("ENROOT_CACHE_PATH", "cache"),
                         ("ENROOT_TEMP_PATH", "temp"), ("ENROOT_DATA_PATH", "data")):
            (tmp / sub).mkdir()
            env[var] = str(tmp / sub)
        try:
            sh.Command(enroot)("import", "-a", arch, "-o", str(out), enroot_uri(ref),
                               _env=env, _timeout=timeout, _err_to_out=False, _in=None)
        except sh.CommandNotFound:
            raise UserError(f"cannot import container image {ref}: '{enroot}' not found on "
                            f"{platform.node()} (install enroot or use the pyxis runtime)") from None
        except sh.TimeoutException:
            return f"enroot import timed out after {timeout:g} s"
        except sh.ErrorReturnCode as exc:
            return f"enroot exited with status {exc.exit_code}: {_tail(exc.stderr)}"
        if not is_valid_squash(out):
            return f"enroot produced no squashfs file at {out}"
        out.chmod(0o666 & ~umask())
        with open(out, "rb") as fh:            # on disk before it gets the name others trust
            os.fsync(fh.fileno())
        os.replace(out, target)
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _tail(data: bytes, lines: int = 3) -> str:
    text = data.decode(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:]) or "(no error output)"


def import_command(ref: str, arch: str, cache_dir: str, partition: str | None = None,
                   python: str = "python3", extra_srun: Sequence[str] = ()) -> list[str]:
    """The ``srun`` line that imports on a compute node of the target architecture.

    ``enroot import -a`` only selects the manifest; unpacking and mksquashfs of an aarch64
    image is fine on x86, but some sites forbid heavy work on login nodes and the image's
    own checks run best where it will run, so GB200 (aarch64) images import on a GB200 node.
    """
    argv = ["srun", "--nodes=1", "--ntasks=1", "--job-name=ixhpc-image-import"]
    if partition:
        argv.append(f"--partition={partition}")
    return [*argv, *extra_srun, python, "-m", "ixhpc.containers", "import", ref,
            "--arch", normalize_arch(arch), "--cache", str(cache_dir)]


def needs_remote_import(arch: str) -> bool:
    return normalize_arch(arch) != normalize_arch(None)


# ---------------------------------------------------------------------------- runtimes


class Runtime(Protocol):
    name: str

    def srun_args(self, spec: ContainerSpec) -> list[str]:
        """Flags added to the ``srun`` line of a step."""

    def wrap(self, spec: ContainerSpec, argv: list[str]) -> list[str]:
        """The command ``srun`` runs for ``argv``."""

    def prepare(self, spec: ContainerSpec) -> list[str] | None:
        """A command that must run (once, before the steps) to fill the squash cache."""


def _usable(ref: str) -> None:
    """A runtime about to use ``ref`` refuses a bad one with a one-line user error."""
    try:
        check_ref(ref)
        if not is_local(ref):
            enroot_uri(ref)
    except ValueError as exc:
        raise ConfigError(f"container image: {exc}") from None


class _CachedImage:
    """Shared by the container runtimes: which image a step names, from the cache if set."""

    def __init__(self, squash_cache: str | None, arch: str | None) -> None:
        self.squash_cache = squash_cache
        self.arch = normalize_arch(arch)

    def image_file(self, spec: ContainerSpec) -> str | None:
        _usable(spec.image)
        if is_local(spec.image):
            return spec.image
        if self.squash_cache:
            return str(squash_path(spec.image, self.arch, self.squash_cache))
        return None

    def prepare(self, spec: ContainerSpec) -> list[str] | None:
        _usable(spec.image)
        if is_local(spec.image) or not self.squash_cache:
            return None
        return ["python", "-m", "ixhpc.containers", "import", spec.image,
                "--arch", self.arch, "--cache", self.squash_cache]


class Pyxis(_CachedImage):
    """Slurm's pyxis plugin: the container is described by srun flags, argv runs unchanged."""

    name = "pyxis"

    def srun_args(self, spec: ContainerSpec) -> list[str]:
        args = [f"--container-image={self.image_file(spec) or pyxis_image(spec.image)}"]
        if spec.mounts:
            args.append("--container-mounts=" + ",".join(
                ":".join([src, dst, *(["+".join(flags)] if flags else [])])
                for src, dst, flags in map(parse_mount, spec.mounts)))
        if spec.workdir:
            args.append(f"--container-workdir={spec.workdir}")
        if spec.name:
            args.append(f"--container-name={spec.name}")
        if spec.env_names:
            args.append("--container-env=" + ",".join(spec.env_names))
        args.append("--container-mount-home" if spec.mount_home else "--no-container-mount-home")
        if spec.remap_root:
            args.append("--container-remap-root")
        if spec.writable:
            args.append("--container-writable")
        if spec.entrypoint is not None:
            args.append("--container-entrypoint" if spec.entrypoint else "--no-container-entrypoint")
        return args

    def wrap(self, spec: ContainerSpec, argv: list[str]) -> list[str]:
        return list(argv)


# The command script ``enroot start --rc`` runs instead of the image's /etc/rc: that rc (written
# by ``enroot import``) changes to the image's WORKDIR, sources /etc/rc.local, then execs the
# image's ENTRYPOINT with the arguments; this one execs the arguments alone (pyxis'
# --no-container-entrypoint writes the same ``exec "$@"`` into /etc/rc.local). Unlike pyxis it
# skips the cd to WORKDIR too: a step that needs a directory names it (``workdir``).
NO_ENTRYPOINT_RC = 'exec "$@"'
# Runs on the compute node: create the named container once per node (flock: co-located
# steps start together), then start it. Values arrive as positional arguments, never as code.
# "$3" = "skip": the entrypoint is not run (``--rc`` with NO_ENTRYPOINT_RC, written under the
# lock beside it, so a step never reads a half-written file).
_ENROOT_SCRIPT = (
    'name="ixhpc-${SLURM_JOB_ID:-nojob}-$1"; image="$2"; entry="$3"; nopts="$4"; shift 4; '
    'exec 9>"${TMPDIR:-/tmp}/$name.lock" && flock 9 || exit 1; '
    'enroot list | grep -qxF -- "$name" || enroot create --name "$name" -- "$image" >&2 || exit 1; '
    'rc=(); if [ "$entry" = skip ]; then rc=(--rc "${TMPDIR:-/tmp}/$name.no-entrypoint.rc"); '
    f'[ -s "${{rc[1]}}" ] || printf "%s\\n" {shlex.quote(NO_ENTRYPOINT_RC)} >"${{rc[1]}}" || exit 1; fi; '
    'exec 9>&-; '
    'opts=("${@:1:$nopts}"); shift "$nopts"; '
    'exec enroot start "${rc[@]}" "${opts[@]}" -- "$name" "$@"'
)


class Enroot(_CachedImage):
    """enroot without pyxis: same semantics as the pyxis flags, through ``enroot start``."""

    name = "enroot"

    def srun_args(self, spec: ContainerSpec) -> list[str]:
        return []

    def start_options(self, spec: ContainerSpec) -> list[str]:
        opts: list[str] = []
        for src, dst, flags in map(parse_mount, spec.mounts):
            # The fstab entry pyxis itself writes for a path mount: create the target, rbind.
            base = "x-create=dir" if src == "tmpfs" else "x-create=auto,rbind"
            opts += ["--mount", f"{src}:{dst}:none:{','.join([base, *flags])}"]
        for name in spec.env_names:
            opts += ["--env", name]            # KEY without =VAL: enroot copies the host value
        return opts                            # root/rw: ENROOT_* settings in wrap()

    def wrap(self, spec: ContainerSpec, argv: list[str]) -> list[str]:
        image = self.image_file(spec)
        if image is None:
            raise ConfigError(f"container image {spec.image}: the enroot runtime needs a squash "
                            f"cache (profile squash-cache) or a .sqsh path")
        # One container per image per job and node; the job id is added on the node.
        base = spec.name or "img-" + hashlib.sha256(image.encode()).hexdigest()[:12]
        opts = self.start_options(spec)
        # enroot reads its settings from the environment too: state every one the pyxis
        # flags state, so a site default never changes the semantics.
        settings = [f"ENROOT_MOUNT_HOME={'y' if spec.mount_home else 'n'}",
                    f"ENROOT_REMAP_ROOT={'y' if spec.remap_root else 'n'}",
                    f"ENROOT_ROOTFS_WRITABLE={'y' if spec.writable else 'n'}"]
        if spec.workdir:
            # enroot start has no workdir option: change directory inside, then exec argv.
            argv = ["sh", "-c", 'cd "$1" && shift && exec "$@"', "ixhpc-workdir", spec.workdir, *argv]
        # None (the site's default) and True run the image's own /etc/rc, as enroot does.
        entry = "skip" if spec.entrypoint is False else "image"
        return ["env", *settings, "bash", "-c", _ENROOT_SCRIPT, "ixhpc-enroot", base, image, entry,
                str(len(opts)), *opts, *argv]


class NoContainer:
    """Processes on the host (the local test cluster): argv unchanged, no image."""

    name = "none"

    def srun_args(self, spec: ContainerSpec) -> list[str]:
        return []

    def wrap(self, spec: ContainerSpec, argv: list[str]) -> list[str]:
        return list(argv)

    def prepare(self, spec: ContainerSpec) -> list[str] | None:
        return None


RUNTIMES = ("pyxis", "enroot", "none")


def runtime(name: str, squash_cache: str | None = None, arch: str | None = None) -> Runtime:
    """The runtime called ``name``; ``squash_cache``/``arch`` make steps use cached .sqsh files."""
    if name == "pyxis":
        return Pyxis(squash_cache, arch)
    if name == "enroot":
        return Enroot(squash_cache or DEFAULT_CACHE, arch)
    if name == "none":
        return NoContainer()
    raise ConfigError(f"unknown container runtime {name!r} (known: {', '.join(RUNTIMES)})")


# ---------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ixhpc.containers",
                                description="Container images for ixhpc jobs: squash cache and srun flags.")
    sub = p.add_subparsers(dest="cmd", required=True)

    def image_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("image", help="registry reference (nvcr.io/nvidia/x:tag) or .sqsh path")
        sp.add_argument("--arch", default=None, help="aarch64 or x86_64 (default: this host's)")
        sp.add_argument("--cache", default=DEFAULT_CACHE, help="squash cache directory")

    imp = sub.add_parser("import", help="import an image into the squash cache; print its path")
    image_args(imp)
    imp.add_argument("--enroot", default="enroot", help="enroot binary (default: %(default)s)")
    imp.add_argument("--attempts", type=int, default=IMPORT_ATTEMPTS)
    image_args(sub.add_parser("path", help="print the cache path of an image (nothing imported)"))
    cmd = sub.add_parser("import-command", help="print the srun line that imports on a compute node")
    image_args(cmd)
    cmd.add_argument("--partition", default=None)
    sa = sub.add_parser("srun-args", help="print the srun flags and wrapper for a step")
    image_args(sa)
    sa.add_argument("--runtime", choices=RUNTIMES, default="pyxis")
    sa.add_argument("--mount", action="append", default=[], help="SRC:DST[:FLAGS]")
    sa.add_argument("--env", action="append", default=[], help="variable NAME to pass in")
    sa.add_argument("--workdir", default=None)
    sa.add_argument("--name", default=None)
    sa.add_argument("--no-entrypoint", action="store_true", help="do not run the image's entrypoint")
    sa.add_argument("--use-cache", action="store_true", help="name the cached .sqsh, not the registry")
    return p


@main_guard("ixhpc.containers")
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "import":
            print(ensure_image(args.image, args.arch, args.cache, args.enroot, args.attempts))
        elif args.cmd == "path":
            print(squash_path(args.image, normalize_arch(args.arch), args.cache))
        elif args.cmd == "import-command":
            print(shlex.join(import_command(args.image, normalize_arch(args.arch), args.cache,
                                            args.partition, sys.executable)))
        else:
            spec = ContainerSpec(image=args.image, mounts=args.mount, env_names=args.env,
                                 workdir=args.workdir, name=args.name,
                                 entrypoint=False if args.no_entrypoint else None)
            rt = runtime(args.runtime, args.cache if args.use_cache else None, args.arch)
            print(shlex.join([*rt.srun_args(spec), *rt.wrap(spec, ["COMMAND..."])]))
    except ValueError as exc:  # an argument the spec or the image rules refuse
        raise ConfigError(_one_line(exc)) from None
    return 0


def _one_line(exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):  # several lines and a URL; keep the first reason
        err = exc.errors()[0]
        return f"{'.'.join(map(str, err['loc']))}: {err['msg'].removeprefix('Value error, ')}"
    return str(exc)


if __name__ == "__main__":
    raise SystemExit(main())

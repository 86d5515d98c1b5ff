"""Engine flags checked against the engines' own flag lists (``ixhpc.engine_flags``).

Every role of every point runs one engine command; each word of it that ixhpc built (its
engine builders, the recipe's ``ixhpc.engine-args``, ``additional-settings`` tuning keys) and
each top-level key of a TensorRT-LLM option file it writes is checked against the flag list
of the engine version the point's image tag implies (``engine_flags.version_from_image``;
no exact list: the nearest known version, said in a warning).

A role's argv is read as ``placement`` builds it (``engines.build``): an ``env NAME=VALUE``
prefix, the fixed ``sh -c`` writers of config files (``ixhpc-write-config CONTENT PATH``),
the multi-node ``bash -c ... ixhpc-node-rank`` wrapper, and wrappers such as
``trtllm-llmapi-launch`` or ``mpirun ...`` are skipped until an engine command starts:
``python3 -m MODULE`` or ``EXECUTABLE [SUBCOMMAND]``. The commands known here are each
engine family's program (``engines.ENGINES[...].program``) and its router's; a command with
no flag list (the simulated engine's ``ixhpc.sim``, Dynamo's etcd and NATS) is not checked.

Problems come back located: ``FILE:LINE: key.path: message`` at the exact
``ixhpc.engine-args`` item when the word came from there, else at the recipe entry.
Checks are cached per (family, version, command, arguments), so the many points of one
entry cost one check.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ixhpc import engines
from ixhpc.engine_config import flag_of
from ixhpc.errors import ConfigError

if TYPE_CHECKING:
    from ixhpc.placement import JobPlan, Role
    from ixhpc.profiles import ClusterProfile
    from ixhpc.recipe import LoadedEntry
    from ixhpc.srtslurm import Deployment
    from ixhpc.srtslurm import Role as SrtRole
    from ixhpc.sweep import RunPoint
    from ixhpc.yamlmodel import Located

# Engine command (as the flag data names it) -> the flag data's family. The workers' commands
# are the engines' programs (``engines.ENGINES``); the others are the routers/frontends
# that the engine builders start beside them.
COMMANDS: dict[str, str] = {
    engines.ENGINES["sglang"].program: "sglang",
    "sglang_router.launch_router": "sglang_router",
    engines.ENGINES["vllm"].program: "vllm",
    f"{engines.ENGINES['trt'].program} serve": "trt",
    f"{engines.ENGINES['trt'].program} disaggregated": "trt",
    "dynamo.frontend": "dynamo",
    engines.ENGINES["dynamo-sglang"].program: "dynamo",
    engines.ENGINES["dynamo-vllm"].program: "dynamo",
    engines.ENGINES["dynamo-trt"].program: "dynamo",
    engines.ENGINES["atom"].program: "atom",
}
OPTIONS_COMMAND = "llm_api_options"   # TensorRT-LLM's LLM-API option keys (engine_flags)
# Flags whose value is a TensorRT-LLM LLM-API option file ixhpc writes.
OPTION_FILE_FLAGS = ("--extra_llm_api_options", "--extra-engine-args")
_PYTHONS = ("python", "python3")
_TRTLLM_SERVE = engines.ENGINES["trt"].program
_WRITE_CONFIG = "ixhpc-write-config"   # $0 of engines.build's config file writer
_NODE_RANK = "ixhpc-node-rank"         # $0 of engines._ranked's multi-node wrapper
DEFAULT_GPUS_PER_NODE = 8              # validate without a cluster: how multi-node workers split


@dataclass(frozen=True)
class Invocation:
    """One engine command found in a role's argv."""

    family: str                    # engine_flags family
    command: str                   # engine_flags command name
    args: tuple[str, ...]          # the words after the command
    files: tuple[tuple[str, str], ...] = ()   # (path, content) written before it runs

    def file(self, path: str) -> str | None:
        return dict(self.files).get(path)


@dataclass(frozen=True)
class Finding:
    """One problem of one role: where it came from and what is wrong."""

    path: tuple[str | int, ...]    # recipe path: the entry, or its engine-args item
    message: str
    flag: str = ""                 # the flag of the offending word (locates engine-config keys)
    option: str = ""               # or the option file key (TensorRT-LLM's engine-config keys)


@dataclass(frozen=True)
class Report:
    errors: tuple[str, ...] = ()    # located lines
    warnings: tuple[str, ...] = ()  # "FILE:LINE: key: warning: ..." lines


@dataclass
class _Collector:
    """Located errors (each once) and warnings (each note once, at its first entry), in the
    order found. Entry lines come from the loaded recipes; a file is read again only to
    locate an engine-args item."""

    entries: Mapping[str, LoadedEntry]
    errors: dict[str, None] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)   # note -> config keys
    docs: dict[str, Located | None] = field(default_factory=dict)

    def locate(self, source: str, path: tuple[str | int, ...], message: str) -> str:
        from ixhpc.errors import ConfigError
        from ixhpc.yamlmodel import format_path, load_yaml

        entry = self.entries.get(str(path[0]))
        if len(path) == 1 and entry is not None:
            return f"{entry.file}:{entry.line}: {format_path(path)}: {message}"
        if source not in self.docs:
            try:
                self.docs[source] = load_yaml(source)
            except (ConfigError, OSError):
                self.docs[source] = None
        doc = self.docs[source]
        if doc is not None:
            return doc.error(path, message)
        line = entry.line if entry is not None else 1
        return f"{source}:{line}: {format_path(path)}: {message}"

    def note(self, key: str, note: str) -> None:
        keys = self.notes.setdefault(note, [])
        if key not in keys:
            keys.append(key)

    def report(self, sources: Mapping[str, str]) -> Report:
        warnings = []
        for note, keys in self.notes.items():
            more = f" (also {len(keys) - 1} other entr{'y' if len(keys) == 2 else 'ies'})" if len(keys) > 1 else ""
            warnings.append(self.locate(sources[keys[0]], (keys[0],), f"warning: {note}{more}"))
        return Report(tuple(self.errors), tuple(warnings))


# ---------------------------------------------------------------------------- argv


_PLACEHOLDER = re.compile("\x00([A-Za-z_][A-Za-z0-9_]*)\x00")   # ixhpc.shell.var


def _script_words(words: Sequence[str]) -> tuple[str, ...]:
    """Words as the job script passes them: a script variable placeholder as ``${NAME}``."""
    return tuple(_PLACEHOLDER.sub(r"${\1}", w) if "\x00" in w else w for w in words)


def _skip_env(argv: Sequence[str]) -> int:
    i = 1
    while i < len(argv) and "=" in argv[i] and not argv[i].startswith("-"):
        i += 1
    return i


def invocation(argv: Sequence[str]) -> Invocation | None:
    """The engine command of a role's argv, or None when it runs none that has a flag list."""
    files: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "env":
            i += _skip_env(argv[i:])
        elif word in ("sh", "bash") and argv[i + 1:i + 2] == ["-c"] and argv[i + 3:i + 4] == [_WRITE_CONFIG]:
            if i + 5 < len(argv):
                files.append((_script_words([argv[i + 5]])[0], argv[i + 4]))
            i += 6
        elif word in ("sh", "bash") and argv[i + 1:i + 2] == ["-c"] and argv[i + 3:i + 4] == [_NODE_RANK]:
            i += 4
        elif word.rsplit("/", 1)[-1] in _PYTHONS and argv[i + 1:i + 2] == ["-m"] and i + 2 < len(argv):
            family = COMMANDS.get(argv[i + 2])
            if family is None:
                return None   # a Python program with no flag list (ixhpc.sim): not checked
            return Invocation(family, argv[i + 2], _script_words(argv[i + 3:]), tuple(files))
        else:
            exe = word.rsplit("/", 1)[-1]
            two = f"{exe} {argv[i + 1]}" if i + 1 < len(argv) else exe
            if two in COMMANDS:
                return Invocation(COMMANDS[two], two, _script_words(argv[i + 2:]), tuple(files))
            if exe == _TRTLLM_SERVE and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                # its command group defaults to `serve`: `trtllm-serve MODEL ...` (srtctl's form)
                serve = f"{exe} serve"
                return Invocation(COMMANDS[serve], serve, _script_words(argv[i + 1:]), tuple(files))
            i += 1   # a wrapper (trtllm-llmapi-launch, mpirun and its options) or a program
    return None


@functools.lru_cache(maxsize=1024)
def _option_keys(content: str) -> tuple[str, ...] | None:
    """The top-level keys of an option file ixhpc wrote (None: not a mapping)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)   # libyaml when there: ~10x faster
    try:
        data = yaml.load(content.replace("\x00", ""), Loader=loader)
    except yaml.YAMLError:
        return None
    return tuple(str(k) for k in data) if isinstance(data, dict) else None


# ---------------------------------------------------------------------------- checks


@functools.lru_cache(maxsize=256)
def engine_version(family: str, image: str) -> tuple[str, str | None]:
    """(version whose flag list is used, warning or None) for an engine family in an image."""
    from ixhpc import engine_flags

    return engine_flags.resolve(family, engine_flags.version_from_image(family, image))


@functools.lru_cache(maxsize=4096)
def _check_args(family: str, version: str, command: str, args: tuple[str, ...]) -> tuple[tuple[int, str], ...]:
    from ixhpc import engine_flags

    out = []
    for p in engine_flags.check(family, version, command, args):
        out.append((p.index, p.message + _choice_hint(family, version, command, args, p.index, p.message)))
    return tuple(out)


def _choice_hint(family: str, version: str, command: str, args: Sequence[str], index: int, message: str) -> str:
    """"; did you mean 'X'?" for a value outside a flag's choices, when one is close."""
    from ixhpc import engine_flags

    if "did you mean" in message or not 0 <= index < len(args):
        return ""
    word = args[index]
    if word.startswith("-") and "=" in word:
        name, _, value = word.partition("=")
    elif index > 0:
        name, value = args[index - 1], word
    else:
        return ""
    flag = engine_flags.flags(family, version, command).get(name)
    if flag is None or not flag.choices or value in flag.choices:
        return ""
    close = difflib.get_close_matches(value, flag.choices, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


@functools.lru_cache(maxsize=1024)
def _check_options(family: str, version: str, keys: tuple[str, ...]) -> tuple[tuple[int, str], ...] | None:
    """Problems of option file keys; None: no option list for that family and version."""
    from ixhpc import engine_flags

    try:
        engine_flags.flags(family, version, OPTIONS_COMMAND)
    except (KeyError, ValueError, LookupError):
        return None
    return tuple((p.index, p.message) for p in engine_flags.check_options(family, version, keys))


@functools.lru_cache(maxsize=256)
def _has_command(family: str, version: str, command: str) -> bool:
    from ixhpc import engine_flags

    try:
        return bool(engine_flags.flags(family, version, command))
    except (KeyError, ValueError, LookupError):
        return False


def check_role(image: str, role_kind: str, argv: Sequence[str], extra: Sequence[str] = ()
               ) -> tuple[list[Finding], list[str]]:
    """Problems of one role's argv (``extra``: the recipe's engine-args for it, the argv's
    last words) and warnings (version not known exactly, no flag list to check against).

    Finding paths are relative to the recipe entry: ``()`` for the entry itself, or
    ``("ixhpc", "engine-args", role_kind, i)`` for an engine-args item.
    """
    checked = _checkable(argv, image)
    if isinstance(checked, list):
        return [], checked
    inv, version, warning = checked
    notes = [f"image {image}: {warning}"] if warning else []
    args = inv.args
    tail = len(args) - len(extra) if extra and tuple(args[len(args) - len(extra):]) == tuple(extra) else None
    found: list[Finding] = []
    for index, message in _check_args(inv.family, version, inv.command, args):
        path: tuple[str | int, ...] = ()
        if tail is not None and index >= tail:
            path = ("ixhpc", "engine-args", role_kind, index - tail)
        found.append(Finding(path, message, _flag_at(args, index)))
    for f in _option_files(inv, image, OPTION_FILE_FLAGS):
        if f.problems is None:
            notes.append(f.note)
            continue
        found.extend(Finding((), f"{f.flag} file ({f.path}): {message}", option=key) for key, message in f.problems)
    return found, notes


def _checkable(argv: Sequence[str], image: str) -> tuple[Invocation, str, str | None] | list[str]:
    """A role's engine invocation with the version its flags are checked against (and the
    warning when that is not the image's exact release), or the notes saying why not."""
    inv = invocation(argv)
    if inv is None:
        return []
    try:
        version, warning = engine_version(inv.family, image)
    except (KeyError, ValueError, LookupError) as exc:   # no flag data for the family
        return [f"{inv.command} not checked: {exc}"]
    if not _has_command(inv.family, version, inv.command):
        return [*([f"image {image}: {warning}"] if warning else []),
                f"no flag list for {inv.family} {version} {inv.command}; its flags are not checked"]
    return inv, version, warning


@dataclass(frozen=True)
class _OptionFile:
    """An option file ixhpc wrote for an engine, its keys checked against TensorRT-LLM's of the
    image's release (dynamo.trtllm's files too)."""

    flag: str
    path: str
    family: str
    version: str
    exact: bool          # against the image's own release (else the nearest older known one)
    problems: tuple[tuple[str, str], ...] | None   # (key, message); None: no option list to check

    @property
    def note(self) -> str:
        return (f"no list of TensorRT-LLM options for {self.family} {self.version}; the keys of the "
                f"{self.flag} file are not checked")


def _option_files(inv: Invocation, image: str, flags: Sequence[str]) -> Iterator[_OptionFile]:
    family = "trt" if inv.family == "dynamo" else inv.family
    try:
        version, warning = engine_version(family, image)
    except (KeyError, ValueError, LookupError):
        return
    for flag, value in _flag_values(inv.args, flags):
        content = inv.file(value)
        keys = _option_keys(content) if content is not None else None
        if keys is None:
            continue   # a file of the user's own: not ixhpc's to read
        problems = _check_options(family, version, keys)
        yield _OptionFile(flag, value, family, version, warning is None,
                          None if problems is None else tuple((keys[i], m) for i, m in problems))


def _flag_values(args: Sequence[str], names: Iterable[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    wanted = tuple(names)
    for i, word in enumerate(args):
        flag, eq, value = word.partition("=")
        if flag in wanted:
            if eq:
                out.append((flag, value))
            elif i + 1 < len(args):
                out.append((flag, args[i + 1]))
    return out


# ---------------------------------------------------------------------------- points and plans


def _role_kind(name: str) -> str:
    """Role name (server, prefill-0, decode-1, router) -> its engine-args key."""
    return name.split("-", 1)[0]


def _engine_args(point: RunPoint, kind: str) -> list[str]:
    args = point.ixhpc.engine_args
    return list(getattr(args, kind, []) or [])


def _flag_at(args: Sequence[str], index: int) -> str:
    """The flag the word at ``index`` is (or is the value of)."""
    if not 0 <= index < len(args):
        return ""
    word = args[index] if args[index].startswith("-") or index == 0 else args[index - 1]
    return word.partition("=")[0] if word.startswith("-") else ""


def _config_key_path(point: RunPoint, kind: str, flag: str, option: str = "") -> tuple[str | int, ...]:
    """Where in the ``ixhpc:`` block an engine-config key gave ``flag`` or option file key
    ``option`` (``()``: nowhere)."""
    if not flag and not option:
        return ()
    blocks: list[tuple[tuple[str | int, ...], Any]] = [(("ixhpc", "engine-config"), point.ixhpc.engine_config)]
    blocks += [(("ixhpc", "overrides", i, "engine-config"), o.engine_config)
               for i, o in enumerate(point.ixhpc.overrides)]
    for where, configs in reversed(blocks):   # the last one that sets it is what the engine reads
        for key in getattr(configs, kind, None) or {}:
            if (flag and flag_of(key) == flag) or (option and str(key) == option):
                return (*where, kind, key)
    return ()


def _check_roles(point: RunPoint, roles: Iterable[Role], out: _Collector) -> None:
    for role in roles:
        kind = _role_kind(role.name)
        findings, notes = check_role(point.image, kind, role.argv, _engine_args(point, kind))
        for f in findings:
            path = f.path or _config_key_path(point, kind, f.flag, f.option)
            out.errors[out.locate(point.source, (point.config_key, *path), f"{role.name}: {f.message}")] = None
        for note in notes:
            out.note(point.config_key, note)


def has_flag_list(framework: str) -> bool:
    """Whether the engine a framework runs has flag lists (the simulated engine has none)."""
    program = engines.engine(framework).program
    return any(command == program or command.startswith(program + " ") for command in COMMANDS)


def check_plans(plans: Iterable[JobPlan], entries: Mapping[str, LoadedEntry] | None = None) -> Report:
    """The roles of planned jobs, as they will run (``runs.plan``). ``entries``: the loaded
    recipe entries (their lines locate warnings and entry-level errors without reading again)."""
    out = _Collector(entries or {})
    sources: dict[str, str] = {}
    for plan in plans:
        point = plan.points[0]
        if has_flag_list(point.framework):
            sources[point.config_key] = point.source
            _check_roles(point, plan.roles, out)
    return out.report(sources)


def check_points(points: Sequence[RunPoint], entries: Mapping[str, LoadedEntry] | None = None,
                 gpus_per_node: int = DEFAULT_GPUS_PER_NODE) -> Report:
    """The roles of run points without a cluster (``validate``): each point on its site's
    nodes if it has one, else on ``gpus_per_node``-GPU nodes (which decides multi-node flags).

    Points whose engine command lines can differ only in values that no flag list constrains
    are checked once: concurrency, max-model-len (a number), the number of workers of a role (each worker runs the same
    command; a router gets one more ``--prefill``/``--decode`` each), and additional-settings
    that only become environment variables (engines turns only ``FLAG_SETTINGS`` into flags).
    """
    from ixhpc.placement import engine_starts

    out = _Collector(entries or {})
    sources: dict[str, str] = {}
    seen: set[tuple[object, ...]] = set()
    for point in [one for p in points for one in engine_starts(p)]:  # as render plans them
        if not has_flag_list(point.framework):
            continue
        flat = _flag_shape(point)
        key = _shape_key(flat)
        if key in seen:
            continue
        seen.add(key)
        sources[point.config_key] = point.source
        try:
            roles = role_argvs(flat, gpus_per_node)
        except ConfigError as exc:  # a setting the engine cannot express (engines.expressible...)
            for e in exc.errors:
                out.errors[out.locate(point.source, (point.config_key,), e)] = None
            continue
        _check_roles(point, roles, out)
    return out.report(sources)


# additional-settings keys that engines turns into flags (or option file keys), optionally
# prefixed PREFILL_/DECODE_; the others only reach the environment.
FLAG_SETTINGS = frozenset({*(k for tuning in engines.TUNING.values() for k in tuning), "MTP_SIZE"})


def _flag_setting(setting: str) -> bool:
    key = setting.partition("=")[0]
    return key.removeprefix("PREFILL_").removeprefix("DECODE_") in FLAG_SETTINGS


def _flag_shape(point: RunPoint) -> RunPoint:
    """The point with one worker per role and only the additional-settings that make flags."""
    from ixhpc.sweep import SinglePoint

    if isinstance(point, SinglePoint):
        return point
    workers = {}
    for name, w in zip(("prefill", "decode"), point.workers()):
        settings = [s for s in w.additional_settings or () if _flag_setting(s)] or None
        workers[name] = w.model_copy(update={"num_worker": min(w.num_worker, 1),
                                             "additional_settings": settings})
    return point.model_copy(update=workers)


def _shape_key(point: RunPoint) -> tuple[object, ...]:
    from ixhpc.sweep import SinglePoint

    shape: tuple[object, ...]
    if isinstance(point, SinglePoint):
        shape = (point.tp, point.ep, point.dp_attn, point.pp, point.dcp_size, point.pcp_size)
    else:
        shape = tuple((w.num_worker, w.tp, w.ep, w.dp_attn, w.pp, w.dcp_size, w.pcp_size,
                       tuple(w.additional_settings or ())) for w in point.workers())
    # max-model-len is left out: it only ever gives a number to --max-model-len (or its kind);
    # the concurrency too, unless engine settings depend on it
    from ixhpc.engine_config import depends_on_conc

    conc = tuple(point.conc) if depends_on_conc(point.ixhpc) else ()
    return (point.config_key, point.kind, point.spec_decoding, point.site, shape, conc)


@functools.lru_cache(maxsize=1)
def _no_cluster() -> ClusterProfile:
    from ixhpc.profiles import ClusterProfile

    return ClusterProfile.model_validate({
        "name": "validate", "partitions": [{"name": "any"}], "gpus-per-node": DEFAULT_GPUS_PER_NODE,
        "arch": "x86_64", "container-runtime": "none"})


def role_argvs(point: RunPoint, gpus_per_node: int = DEFAULT_GPUS_PER_NODE) -> list[Role]:
    """The roles placement would start for a point (argv as placed), without a cluster."""
    from ixhpc import placement
    from ixhpc.sweep import DisaggPoint
    from ixhpc.topology import layout

    topo = point.topology or layout(point.engine_roles(), gpus_per_node)
    profile = _no_cluster()
    model = point.ixhpc.model_path or point.model
    if isinstance(point, DisaggPoint):
        return placement.disagg_roles(point, topo, profile, model)
    return placement.aggregated_roles(point, topo, model)



def clear_caches() -> None:
    """Forget cached versions and check results (the flag data changed: tests, regeneration)."""
    for cached in (engine_version, _check_args, _check_options, _has_command, _option_keys):
        cached.cache_clear()


# ---------------------------------------------------------------------------- srt-slurm plans


_SRT_ENGINE_ROLES: tuple[SrtRole, ...] = ("prefill", "decode", "aggregated")


def check_srt(dep: Deployment, plan: JobPlan) -> Report:
    """The roles of an srt-slurm deployment's job (``ixhpc.srtslurm.plan``), as they will run.
    A problem is located at the recipe key it came from: the ``<engine>_config.<role>`` key
    of a flag or of a TensorRT-LLM option file key, the ``frontend.args`` key, else the file.
    Against the flag list of the exact release a problem is an error; against the nearest
    older known release (the image's is newer than the flag data) a warning, since the newer
    release may have the flag."""
    errors: dict[str, None] = {}
    notes: dict[str, None] = {}

    def found(exact: bool, path: tuple[str | int, ...], message: str) -> None:
        if exact:
            errors[dep.doc.error(path, message)] = None
        else:
            notes[dep.doc.error(path, f"warning: {message} (checked against an older release)")] = None

    for role in plan.roles:
        checked = _checkable(role.argv, dep.container)
        if isinstance(checked, list):
            notes.update((dep.doc.error((), f"warning: {n}"), None) for n in checked)
            continue
        inv, version, warning = checked
        if warning:
            notes[dep.doc.error((), f"warning: image {dep.container}: {warning}")] = None
        kind = role.name.split("-", 1)[0]
        engine_role = next((r for r in _SRT_ENGINE_ROLES if r == kind), None)
        for index, message in _check_args(inv.family, version, inv.command, inv.args):
            path = _srt_flag_path(dep, engine_role, inv.args, index)
            found(warning is None, path, f"{role.name}: {message}" + ("" if path else " (a flag srtctl adds)"))
        # srtctl gives trtllm-serve its option file as --config
        serve = inv.command == f"{_TRTLLM_SERVE} serve"
        for f in _option_files(inv, dep.container, (*OPTION_FILE_FLAGS, "--config") if serve else OPTION_FILE_FLAGS):
            if f.problems is None:
                notes[dep.doc.error((), f"warning: {f.note}")] = None
                continue
            for key, message in f.problems:
                path = ("backend", "trtllm_config", engine_role, key) if engine_role else ()
                found(f.exact, path, f"{role.name}: {f.flag} file ({f.path}): {message}")
    return Report(tuple(errors), tuple(notes))


def _srt_flag_path(dep: Deployment, role: SrtRole | None, args: Sequence[str], index: int
                   ) -> tuple[str | int, ...]:
    """The recipe key that gave the flag at (or before the value at) ``args[index]``."""
    flag = _flag_at(args, index)
    if not flag:
        return ()
    if role is not None:
        engine = f"{dep.backend_type}_config"
        for key in dep.engine_config(role):
            if flag_of(key) == flag:
                return ("backend", engine, role, str(key))
        return ()
    for key in dep.frontend.args or {}:
        if f"--{key}" == flag:
            return ("frontend", "args", key)
    return ()

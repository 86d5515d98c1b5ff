"""A stand-in's life: record how it was started, parse like the engine, serve.

``main(["sglang.launch_server", ARG...])`` (or ``vllm``, ``trtllm-serve``,
``trtllm-llmapi-launch``, ``etcd``, ``nats-server`` with their arguments) is what the
executables and modules of ``RUN/standins`` run (see ``ixhpc.standins.files``).

The job's stand-in config (``$IXHPC_STANDIN_CONFIG``, written by render) holds the flag tables
of the releases the job's image implies and the simulated engine's settings; without it (a
stand-in run by hand), ``ixhpc.engine_flags`` when importable (``$IXHPC_STANDIN_VERSION`` or the
newest known version), else ``flagtable.FALLBACK``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ixhpc.errors import main_guard
from ixhpc.standins import commands, flagtable, parsing

CONFIG_ENV = "IXHPC_STANDIN_CONFIG"      # the job's stand-in config (JSON)
RECORD_ENV = "IXHPC_STANDIN_RECORD"      # where it records how it was started ({role}: filled in)
VERSION_ENV = "IXHPC_STANDIN_VERSION"    # without a config: the release to parse as
WRAPPER_ENV = "IXHPC_STANDIN_WRAPPER"    # set by trtllm-llmapi-launch for the command it runs
# ixhpc.recipe.SECRET_NAME's rule (the bundle does not carry ixhpc.recipe; a test keeps them equal).
SECRET_NAME = re.compile(r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|API_KEY|ACCESS_KEY|"
                         r"PRIVATE_KEY)$", re.I)
SECRET_VALUE = "<not recorded: secret-looking name>"
USAGE = ("usage: python -m ixhpc.standins PROGRAM [ARG...]\n"
         "PROGRAM: vllm | trtllm-serve | trtllm-llmapi-launch | etcd | nats-server | numactl | mooncake_master | " +
         " | ".join(c for c in commands.COMMANDS if "." in c) + "\n"
         "ixhpc's engine stand-ins: the simulated engine started by a real engine's command line.")


def command_of(program: str, args: list[str]) -> tuple[str, list[str], list[str]]:
    """(command name, its arguments, the argv as started) from a program and its words."""
    if program == "trtllm-serve" and args and not args[0].startswith("-") \
            and f"{program} {args[0]}" not in commands.COMMANDS:
        # TensorRT-LLM's command group defaults to `serve`: `trtllm-serve MODEL ...` (srtctl's form)
        return f"{program} serve", args, [program, *args]
    if program in ("vllm", "trtllm-serve") and args and not args[0].startswith("-"):
        return f"{program} {args[0]}", args[1:], [program, *args]
    if program in ("vllm", "trtllm-serve"):
        return program, args, [program, *args]
    if program in ("etcd", "nats-server", "mooncake_master"):
        return program, args, [program, *args]
    return program, args, ["python3", "-m", program, *args]


def load_config(env: Mapping[str, str]) -> dict[str, Any]:
    path = env.get(CONFIG_ENV)
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"ixhpc stand-in: cannot read its config {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


def tables(family: str, command: str, config: dict[str, Any], env: Mapping[str, str]
           ) -> tuple[flagtable.Table, flagtable.Table | None, dict[str, Any]]:
    """(the command's flag table, trt's llm_api_options table or None, where they came from)."""
    families = config.get("families") or {}
    fam = families.get(family)
    if fam is not None:
        cmds = fam.get("commands") or {}
        if command not in cmds:
            raise SystemExit(f"ixhpc stand-in: {family} {fam.get('version')} has no command {command!r} "
                             f"in the flag data ({fam.get('source')})")
        # trtllm-serve's option files and dynamo.trtllm's engine args: TensorRT-LLM's LLM-API keys
        options = ((families.get("trt") or {}).get("commands") or {}).get("llm_api_options")
        return (flagtable.from_json(cmds[command]), None if options is None else flagtable.from_json(options),
                {k: fam.get(k) for k in ("version", "source", "warning")})
    engine_flags = flagtable.load_engine_flags()
    if engine_flags is None:
        fallback = flagtable.FALLBACK[family]
        return (fallback[command], flagtable.FALLBACK["trt"]["llm_api_options"] if family in ("trt", "dynamo")
                else None, {"version": None, "source": flagtable.FALLBACK_SOURCE, "warning": None})
    version, warning = engine_flags.resolve(family, env.get(VERSION_ENV) or None)
    table = flagtable.from_engine_flags(engine_flags.flags(family, version, command))
    options = None
    if family in ("trt", "dynamo"):
        trt_version = engine_flags.resolve("trt", None)[0] if family == "dynamo" else version
        options = flagtable.from_engine_flags(engine_flags.flags("trt", trt_version, "llm_api_options"))
    return table, options, {"version": version, "source": "ixhpc.engine_flags", "warning": warning}


def record(argv: list[str], command: str, env: Mapping[str, str], extra: dict[str, Any]) -> Path | None:
    """The argv and environment this stand-in was started with, in the job's log directory."""
    pattern = env.get(RECORD_ENV)
    if not pattern or "{role}" not in pattern:
        return None
    role = env.get("SLURM_JOB_NAME") or command.replace(" ", "-")
    rank = commands.rank(env)
    path = Path(pattern.replace("{role}", re.sub(r"[^A-Za-z0-9._-]", "_", role if rank == 0 else f"{role}.{rank}")))
    data = {
        "command": command, "argv": argv, "role": role, "rank": rank,
        "env": {k: SECRET_VALUE if SECRET_NAME.search(k) else v for k, v in sorted(env.items())},
        "cwd": os.getcwd(), "host": socket.gethostname(), "pid": os.getpid(),
        "python": sys.executable, "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **extra,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)
    return path


@main_guard("ixhpc stand-in")  # ixhpc's own failures only; engine-style errors are the stand-ins'
def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if env is None else env
    if not words or words[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if words else 2
    program, args = words[0], words[1:]
    if program == "trtllm-llmapi-launch":
        return _llmapi_launch(args, env)
    if program == "numactl":
        return _numactl(args)
    command, args, started = command_of(program, args)
    if env.get(WRAPPER_ENV):
        started = [env[WRAPPER_ENV], *started]
    if command not in commands.COMMANDS:
        return _unknown_command(program, command, args)
    spec = commands.COMMANDS[command]
    config = load_config(env)
    source: dict[str, Any] = {}
    table: flagtable.Table = {}
    options = None
    if spec.family:
        table, options, source = tables(spec.family, command, config, env)
        if source.get("warning"):
            print(f"ixhpc stand-in: {source['warning']}", file=sys.stderr, flush=True)
    record(started, command, env, {"family": spec.family, **source})
    try:
        serve = commands.plan(command, table, args, env, options)
    except parsing.UsageError as exc:
        print(exc.message, file=sys.stderr, flush=True)
        return parsing.EXIT_USAGE
    except commands.ConfigFileError as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return 1
    from ixhpc.bench import eventloop
    from ixhpc.standins import serve as serving

    settings = dict(config.get("sim") or {})
    describe = f"{' '.join(started[:3] if started[0] == 'python3' else started[:2])} stand-in " \
               f"({spec.family or program} {source.get('version') or ''})".replace(" )", ")")
    try:
        eventloop.run(serving.run(serve, settings, describe))
    except (ValueError, OSError) as exc:
        print(f"ixhpc stand-in for {command}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


def _unknown_command(program: str, command: str, args: list[str]) -> int:
    if program == "vllm":
        print("usage: vllm [-h] [-v] {chat,complete,serve,bench,collect-env,run-batch} ...\n"
              f"vllm: error: argument subparser: invalid choice: '{command.split(' ', 1)[-1]}' "
              "(choose from 'chat', 'complete', 'serve', 'bench', 'collect-env', 'run-batch')", file=sys.stderr)
    elif program == "trtllm-serve":
        print("Usage: trtllm-serve [OPTIONS] COMMAND [ARGS]...\nTry 'trtllm-serve --help' for help.\n\n"
              f"Error: No such command '{command.split(' ', 1)[-1]}'.", file=sys.stderr)
    else:
        print(f"ixhpc stand-in: no stand-in for {program!r}\n{USAGE}", file=sys.stderr)
    return parsing.EXIT_USAGE


def _llmapi_launch(args: list[str], env: Mapping[str, str]) -> int:
    """trtllm-llmapi-launch CMD...: MPI rank 0 runs CMD (the server), the other ranks serve it
    as workers; here they wait to be stopped."""
    record(["trtllm-llmapi-launch", *args], "trtllm-llmapi-launch", env, {"family": "trt"})
    if not args:
        print("trtllm-llmapi-launch: expected a command to launch", file=sys.stderr)
        return parsing.EXIT_USAGE
    if commands.rank(env) != 0:
        import signal

        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        print(f"ixhpc stand-in: trtllm-llmapi-launch rank {commands.rank(env)}: an MPI worker of rank 0's "
              "server; waiting to be stopped", flush=True)
        while True:
            time.sleep(3600)
    os.environ[WRAPPER_ENV] = "trtllm-llmapi-launch"
    os.execvp(args[0], args)
    return 0  # not reached


# numactl's policy options that take a value (short and long spellings); the others are bare.
_NUMA_VALUED = {"-m", "--membind", "-N", "--cpunodebind", "-C", "--physcpubind", "-i", "--interleave",
                "-p", "--preferred", "-P", "--preferred-many", "-w", "--weighted-interleave"}
_NUMA_BARE = {"-l", "--localalloc", "-a", "--all", "-b", "--balancing", "-h", "--hardware"}


def _numactl(args: list[str]) -> int:
    """numactl POLICY... CMD...: the local cluster's nodes have no NUMA layout to bind to (its
    nodes share one host), so the policy is checked for form and CMD runs as it is."""
    rest = list(args)
    while rest and rest[0].startswith("-"):
        word = rest.pop(0)
        name = word.split("=", 1)[0]
        if name in _NUMA_VALUED and "=" not in word:
            if not rest:
                print(f"numactl: option {word} requires an argument", file=sys.stderr)
                return 1
            rest.pop(0)
        elif name not in _NUMA_VALUED and name not in _NUMA_BARE:
            print(f"numactl: unrecognized option '{word}'", file=sys.stderr)
            return 1
    if not rest:
        print("usage: numactl [--membind= | -m <nodes>] ... command args ...", file=sys.stderr)
        return 1
    os.execvp(rest[0], rest)
    return 0  # not reached

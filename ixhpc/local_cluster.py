"""The project's own multi-node Slurm cluster on one machine, for tests and the demo.

One ``munged``, one MariaDB server, one ``slurmdbd``, one ``slurmctld`` and one ``slurmd -N``
per node, all from Debian's packages, all state (configs, databases, spool, logs, pid files)
under one directory. Debian's slurm 22.05 is built with multiple-slurmd support, so every node
is ``NodeHostname=localhost NodeAddr=127.0.0.1`` with a port of its own.

Daemons run in the foreground of their own session (``-D``/``-F``), so the pid we record is
the daemon's own; ``down`` stops exactly those pids, after checking each still runs the
program we started (a recycled pid is never killed).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ixhpc import atomic
from ixhpc.errors import UserError

CLUSTER_NAME = "ixhpc-local"
SYSTEM_SLURM_CONF = Path("/etc/slurm/slurm.conf")
# Ports away from Slurm's defaults (6817-6819) so a real Slurm on the machine is untouched.
BASE_PORT = int(os.environ.get("IXHPC_LOCAL_CLUSTER_PORT", "16810"))
APT_PACKAGES = ("slurm-wlm", "slurmdbd", "mariadb-server", "munge")


@dataclasses.dataclass(frozen=True)
class Node:
    name: str
    partition: str
    gpus: int
    port: int


def nodes() -> list[Node]:
    """The cluster's shape: 4 GB200-like nodes of 4 GPUs, 2 MI355X-like nodes of 8."""
    shape = [("gb", "gb200", 4, 4), ("mi", "mi355x", 2, 8)]
    out: list[Node] = []
    for prefix, partition, count, gpus in shape:
        for i in range(1, count + 1):
            out.append(Node(f"{prefix}{i}", partition, gpus, BASE_PORT + 10 + len(out)))
    return out


def default_dir() -> Path:
    env = os.environ.get("IXHPC_LOCAL_CLUSTER_DIR")
    if env:
        return Path(env)
    return Path.home() / ".local" / "state" / "ixhpc" / "local-cluster"


@dataclasses.dataclass(frozen=True)
class Layout:
    """Every path the cluster uses, derived from its one state directory."""

    root: Path

    @property
    def slurm_conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.root / "run" / "munge.socket"

    @property
    def mysql_socket(self) -> Path:
        return self.root / "run" / "mysqld.sock"

    def pid_file(self, name: str) -> Path:
        return self.root / "pids" / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.root / "log" / f"{name}.log"

    def env(self) -> dict[str, str]:
        """Environment for Slurm clients and daemons that points them at this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.slurm_conf)}


# ---------------------------------------------------------------- configuration files


def _slurm_conf(lay: Layout) -> str:
    r = lay.root
    node_lines = "\n".join(
        f"NodeName={n.name} NodeHostname=localhost NodeAddr=127.0.0.1 Port={n.port} "
        f"CPUs=8 RealMemory=8000 Gres=gpu:{n.gpus} State=UNKNOWN"
        for n in nodes()
    )
    by_part: dict[str, list[str]] = {}
    for n in nodes():
        by_part.setdefault(n.partition, []).append(n.name)
    part_lines = "\n".join(
        f"PartitionName={p} Nodes={','.join(names)} MaxTime=INFINITE State=UP"
        for p, names in by_part.items()
    )
    everyone = ",".join(n.name for n in nodes())
    return f"""\
# Written by `ixhpc local-cluster up`; regenerated on every `up`. Do not edit.
ClusterName={CLUSTER_NAME}
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={BASE_PORT}
SlurmdPort={BASE_PORT + 1}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={lay.munge_socket}
CredType=cred/munge
StateSaveLocation={r}/spool/ctld
SlurmdSpoolDir={r}/spool/slurmd-%n
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd-%n.pid
SlurmctldLogFile={lay.log("slurmctld")}
SlurmdLogFile={r}/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
# Processes on the host, no cgroups: this cluster runs inside containers and CI machines.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
MpiDefault=none
SwitchType=switch/none
LaunchParameters=use_interactive_step
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
# Nodes declare more CPUs than the machine has; trust the configuration.
SlurmdParameters=config_overrides
ReturnToService=2
# Hetjobs only start on a backfill pass; make that pass every second.
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=2
SlurmctldTimeout=30
# Notice a dead node in seconds, not minutes (the fault tests kill slurmd on purpose).
SlurmdTimeout=10
InactiveLimit=0
MinJobAge=300
KillWait=5
UnkillableStepTimeout=30
MessageTimeout=10
MailProg=/bin/true
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort={BASE_PORT + 2}
# For the slurmdbd connection Slurm takes the munge socket from here, not from AuthInfo.
AccountingStoragePass={lay.munge_socket}
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
{node_lines}
{part_lines}
PartitionName=debug Nodes={everyone} MaxTime=INFINITE State=UP Default=YES
"""


def _gres_conf(lay: Layout) -> str:
    # One line per node: a gres line on a node range can come up empty in 22.05. slurmd drops
    # a GPU without File=, so each node gets placeholder device files of its own; in return
    # Slurm sets CUDA_VISIBLE_DEVICES per step as on a real GPU node.
    return "".join(f"NodeName={n.name} Name=gpu File={_dev_dir(lay, n)}/gpu[0-{n.gpus - 1}]\n"
                   for n in nodes())


def _dev_dir(lay: Layout, node: Node) -> Path:
    return lay.root / "dev" / node.name


def _make_placeholder_device(path: Path) -> None:
    """A character device with /dev/null's numbers: Slurm wants a device file per GPU.

    Where mknod is not allowed, a plain file still schedules; Slurm then logs an error and
    sets no CUDA_VISIBLE_DEVICES.
    """
    if path.is_char_device():
        return
    path.unlink(missing_ok=True)
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except OSError:
        path.touch()


def _slurmdbd_conf(lay: Layout, db_password: str) -> str:
    return f"""\
# Written by `ixhpc local-cluster up`.
AuthType=auth/munge
AuthInfo=socket={lay.munge_socket}
DbdHost=localhost
DbdPort={BASE_PORT + 2}
SlurmUser=root
PidFile={lay.root}/run/slurmdbd.pid
LogFile={lay.log("slurmdbd")}
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={BASE_PORT + 3}
StorageUser=slurm
StoragePass={db_password}
StorageLoc=slurm_acct_db
"""


def _write_configs(lay: Layout) -> bool:
    """Write every config file; True when slurm.conf changed (running daemons must reload)."""
    for sub in ("etc", "run", "pids", "log", "spool/ctld", "munge", "mysql"):
        (lay.root / sub).mkdir(parents=True, exist_ok=True)
    for n in nodes():
        (lay.root / "spool" / f"slurmd-{n.name}").mkdir(parents=True, exist_ok=True)
        _dev_dir(lay, n).mkdir(parents=True, exist_ok=True)
        for i in range(n.gpus):
            _make_placeholder_device(_dev_dir(lay, n) / f"gpu{i}")
    etc = lay.root / "etc"
    old = lay.slurm_conf.read_text() if lay.slurm_conf.exists() else None
    atomic.write_text(etc / "slurm.conf", _slurm_conf(lay))
    changed = old is not None and old != lay.slurm_conf.read_text()
    atomic.write_text(etc / "gres.conf", _gres_conf(lay))
    atomic.write_text(etc / "cgroup.conf", "CgroupPlugin=autodetect\n")
    atomic.write_text(etc / "slurmdbd.conf", _slurmdbd_conf(lay, _db_password(lay)), mode=0o600)
    return changed


def _db_password(lay: Layout) -> str:
    path = lay.root / "mysql" / "slurm.password"
    if not path.exists():
        atomic.write_text(path, secrets.token_hex(16), mode=0o600)
    return path.read_text().strip()


# ---------------------------------------------------------------- daemons


@dataclasses.dataclass(frozen=True)
class Daemon:
    name: str
    argv: list[str]


def _daemons(lay: Layout) -> list[Daemon]:
    r = lay.root
    out = [
        Daemon("munged", [
            "munged", "-F", "--force", f"--socket={lay.munge_socket}",
            f"--key-file={r}/munge/munge.key", f"--pid-file={r}/run/munged.pid",
            f"--log-file={lay.log('munged')}", f"--seed-file={r}/munge/munged.seed",
        ]),
        Daemon("mariadbd", [
            "mariadbd", "--no-defaults", f"--datadir={r}/mysql/data",
            f"--socket={lay.mysql_socket}", "--bind-address=127.0.0.1",
            f"--port={BASE_PORT + 3}", "--user=root", f"--pid-file={r}/run/mariadbd.pid",
            f"--log-error={lay.log('mariadbd')}", "--skip-log-bin", "--innodb-buffer-pool-size=64M",
        ]),
        # slurmdbd has no -f: it reads slurmdbd.conf beside $SLURM_CONF.
        Daemon("slurmdbd", ["slurmdbd", "-D"]),
        Daemon("slurmctld", ["slurmctld", "-D", "-i", "-f", str(lay.slurm_conf)]),
    ]
    out += [Daemon(f"slurmd-{n.name}", ["slurmd", "-D", "-N", n.name, "-f", str(lay.slurm_conf)])
            for n in nodes()]
    return out


def _read_pid(lay: Layout, name: str) -> int | None:
    try:
        return int(lay.pid_file(name).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _running(lay: Layout, d: Daemon) -> int | None:
    """The daemon's pid if the process we recorded is alive and still runs its program."""
    pid = _read_pid(lay, d.name)
    if pid is None:
        return None
    proc = Path(f"/proc/{pid}")
    try:
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        environ = (proc / "environ").read_bytes()
    except OSError:
        return None
    if state == "Z" or not cmdline or Path(cmdline[0].decode()).name != d.argv[0]:
        return None
    # Same program, started with our SLURM_CONF (every daemon gets it): it is ours.
    return pid if f"SLURM_CONF={lay.slurm_conf}".encode() in environ.split(b"\0") else None


def _start(lay: Layout, d: Daemon) -> int:
    log = open(lay.log(d.name + ".console"), "ab")
    proc = subprocess.Popen(
        d.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        env=lay.env(), start_new_session=True, close_fds=True,
    )
    log.close()
    atomic.write_text(lay.pid_file(d.name), f"{proc.pid}\n")
    return proc.pid


# ---------------------------------------------------------------- readiness


def _wait(what: str, check: Callable[[], bool], lay: Layout, daemon: Daemon, timeout: float = 60.0) -> None:
    """Poll ``check`` until it holds; fail at once, with its last log line, if the daemon died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if _running(lay, daemon) is None:
            _fail(f"{daemon.name} exited while starting", lay, daemon)
        time.sleep(0.1)
    _fail(f"{what} did not become ready in {timeout:.0f} s", lay, daemon)


def _fail(why: str, lay: Layout, daemon: Daemon) -> None:
    tail = _tail(lay.log(daemon.name)) or _tail(lay.log(daemon.name + ".console"))
    raise UserError(f"local cluster: {why}; last log line: {tail or '(empty)'} "
                    f"(logs: {lay.root / 'log'})")


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _quiet(argv: list[str], lay: Layout, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=lay.env(), timeout=timeout)


def _munge_ok(lay: Layout) -> bool:
    if not lay.munge_socket.exists():
        return False
    return _quiet(["munge", "-n", "-S", str(lay.munge_socket)], lay).returncode == 0


def _nodes_ready(lay: Layout) -> bool:
    """True when every node is usable; nodes that an earlier run left down or drained (a
    killed slurmd, a changed gres.conf) are resumed on the way."""
    out = _quiet(["sinfo", "-h", "-N", "-o", "%N %t"], lay).stdout
    states = dict(line.split() for line in out.splitlines() if len(line.split()) == 2)
    stuck = [n for n, st in states.items() if st.rstrip("*~#$@") in ("down", "drain", "drng", "inval")]
    if stuck:
        _quiet(["scontrol", "update", f"NodeName={','.join(stuck)}", "State=RESUME"], lay)
    # A trailing '*' means the controller has not heard from the node yet; planned and
    # completing nodes are up (other jobs' doing).
    return all(states.get(n.name) in ("idle", "mix", "alloc", "plnd", "comp") for n in nodes())


# ---------------------------------------------------------------- setup steps


def _ensure_munge_key(lay: Layout) -> None:
    key = lay.root / "munge" / "munge.key"
    if not key.exists():
        atomic.write_bytes(key, secrets.token_bytes(1024), mode=0o600)
    (lay.root / "munge").chmod(0o700)


def _ensure_database(lay: Layout) -> None:
    data = lay.root / "mysql" / "data"
    if not (data / "mysql").is_dir():
        shutil.rmtree(data, ignore_errors=True)
        res = _quiet(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                      "--auth-root-authentication-method=socket", "--skip-test-db"], lay, 120)
        if res.returncode != 0:
            raise UserError(f"local cluster: mariadb-install-db failed: {res.stderr.strip()[-300:]}")


def _ensure_db_user(lay: Layout) -> None:
    pw = _db_password(lay)
    sql = (f"CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '{pw}';"
           f"ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{pw}';"
           "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';")
    # The password goes through stdin, never argv, so `ps` cannot show it.
    res = subprocess.run(["mariadb", "--no-defaults", f"--socket={lay.mysql_socket}", "-u", "root"],
                         input=sql, capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise UserError(f"local cluster: creating the accounting database user failed: "
                        f"{res.stderr.strip()}")


def _mysql_ok(lay: Layout) -> bool:
    return _quiet(["mariadb-admin", "--no-defaults", f"--socket={lay.mysql_socket}", "-u", "root",
                   "ping"], lay).returncode == 0


def _ensure_accounting(lay: Layout) -> None:
    """Register the cluster and root's account so `sacct` and submitit see real states."""
    listed = _quiet(["sacctmgr", "-n", "-P", "list", "cluster", "format=cluster"], lay).stdout
    if CLUSTER_NAME not in listed.split():
        _quiet(["sacctmgr", "-i", "add", "cluster", CLUSTER_NAME], lay, 30)


def _link_system_conf(lay: Layout) -> str:
    """Point /etc/slurm/slurm.conf at ours so plain `sinfo`/`sbatch` work, if that is ours to do."""
    if SYSTEM_SLURM_CONF.is_symlink() or not SYSTEM_SLURM_CONF.exists():
        try:
            SYSTEM_SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
            tmp = SYSTEM_SLURM_CONF.with_name(".slurm.conf.ixhpc")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(lay.slurm_conf)
            os.replace(tmp, SYSTEM_SLURM_CONF)
            return f"{SYSTEM_SLURM_CONF} -> {lay.slurm_conf}"
        except OSError:
            pass
    return f"export SLURM_CONF={lay.slurm_conf}"


# ---------------------------------------------------------------- public API


def check_installed() -> None:
    missing = [b for b in ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sinfo")
               if shutil.which(b) is None]
    if missing:
        raise UserError(f"local cluster: missing {', '.join(missing)}; install them with "
                        f"`apt-get install {' '.join(APT_PACKAGES)}` (or `make deps`)")


def up(root: Path | None = None, link: bool = True) -> tuple[float, str]:
    """Start whatever is not running; return (seconds taken, how clients find the config).

    With ``link``, /etc/slurm/slurm.conf is pointed at this cluster so plain `sinfo` works.
    """
    check_installed()
    t0 = time.monotonic()
    lay = Layout((root or default_dir()).resolve())
    changed = _write_configs(lay)
    _ensure_munge_key(lay)
    _ensure_database(lay)
    daemons = {d.name: d for d in _daemons(lay)}

    def start(name: str, ready: Callable[[], bool]) -> None:
        if _running(lay, daemons[name]) is None:
            _start(lay, daemons[name])
        _wait(name, ready, lay, daemons[name])

    start("munged", lambda: _munge_ok(lay))
    start("mariadbd", lambda: _mysql_ok(lay))
    _ensure_db_user(lay)
    start("slurmdbd", lambda: _port_open(BASE_PORT + 2))
    _ensure_accounting(lay)
    start("slurmctld", lambda: _quiet(["scontrol", "ping"], lay).returncode == 0)
    if changed:  # an older ixhpc wrote a different slurm.conf: running daemons reload it
        _quiet(["scontrol", "reconfigure"], lay)
    slurmds = [f"slurmd-{n.name}" for n in nodes()]
    for name in slurmds:
        if _running(lay, daemons[name]) is None:
            _start(lay, daemons[name])
    for name in slurmds:
        _wait("all slurmd nodes", lambda: _nodes_ready(lay), lay, daemons[name])
    how = _link_system_conf(lay) if link else f"export SLURM_CONF={lay.slurm_conf}"
    return time.monotonic() - t0, how


def down(root: Path | None = None) -> list[str]:
    """Stop exactly the daemons `up` started (by recorded pid), in reverse order."""
    lay = Layout((root or default_dir()).resolve())
    stopped = []
    for d in reversed(_daemons(lay)):
        pid = _running(lay, d)
        if pid is None:
            continue
        os.kill(pid, signal.SIGTERM)
        stopped.append((d, pid))
    for d, pid in stopped:
        _wait_gone(pid)
        lay.pid_file(d.name).unlink(missing_ok=True)
    return [d.name for d, _ in stopped]


def _wait_gone(pid: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def status(root: Path | None = None) -> dict[str, int | None]:
    """Daemon name -> pid (None when not running)."""
    lay = Layout((root or default_dir()).resolve())
    return {d.name: _running(lay, d) for d in _daemons(lay)}


def client_env(root: Path | None = None) -> dict[str, str]:
    return Layout((root or default_dir()).resolve()).env()

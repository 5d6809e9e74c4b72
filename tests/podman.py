"""A real Docker Engine API for tests: podman's API service on a unix socket in a temp dir.

    podman = Podman.create()          # storage, configs and the busybox image in a temp dir
    podman.start()                    # `podman system service` on podman.url (unix://...)
    client = podman.client()          # docker.DockerClient
    ...
    podman.stop()                     # the engine goes away (containers keep running)
    podman.start()                    # ...and comes back
    podman.close()                    # containers removed, processes reaped, dir deleted

Works without pytest (tests/integration/podman_fixture.py wraps it in a fixture).

Processes: PID 1 on these machines does not reap orphans, and conmon (podman's per-container
monitor) always daemonizes. So the service runs under a small reaper -- this file run as a
script -- that is a child subreaper: orphaned conmons and their `podman container cleanup`
become its children and are reaped. Containers are made through the API only (a `podman run`
from the CLI would orphan its conmon to PID 1); the CLI is used for import and removal.
See /work/shared/REAL-COMPONENTS.md for the configuration this needs.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

IMAGE = "localhost/busybox:latest"
SERVICE = ("podman", "system", "service", "--time=0")
PR_SET_CHILD_SUBREAPER = 36
_ROOTFS_TAR: Path | None = None  # built once per process: the image's layer


class Podman:
    def __init__(self, root: Path) -> None:
        """`root`: an empty directory this object owns (and deletes on close)."""
        self.root = root
        self.socket = root / "podman.sock"
        self.url = f"unix://{self.socket}"
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(root / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
        }
        self._services: list[subprocess.Popen[bytes]] = []  # reapers, newest last
        self._count = 0

    @classmethod
    def create(cls, root: Path | None = None) -> Podman:
        # A short path: conmon's socket paths below the run root must fit in 108 bytes.
        podman = cls(root or Path(tempfile.mkdtemp(prefix="podman-", dir="/tmp")))
        try:
            podman._configure()
            podman.cli("import", "-", IMAGE, stdin=rootfs_tar().read_bytes())
        except BaseException:
            podman.close()
            raise
        return podman

    def _configure(self) -> None:
        r = self.root
        (r / "containers.conf").write_text(
            "[containers]\n"
            # Without these, podman fails here with "setrlimit RLIMIT_NOFILE: Operation not
            # permitted" and "cgroups in hybrid mode not supported".
            'default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            # The default /run/libpod would be shared with other podman instances.
            f'tmp_dir = "{r}/tmp"\n'
            "[network]\n"
            f'network_config_dir = "{r}/net"\n'
        )
        (r / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{r}/storage"\nrunroot = "{r}/run"\n'
        )

    def cli(self, *args: str, stdin: bytes | None = None) -> str:
        """Run the podman CLI on this storage; -> stdout. Never `run` containers with it."""
        done = subprocess.run(
            ["podman", *args],
            input=stdin,
            env=self.env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"podman {args[0]} failed: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode()

    # The service ------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> None:
        """Serve the Docker API on self.url; returns once it answers /_ping."""
        self._count += 1
        status = self.root / f"service-{self._count}.exit"
        log = open(self.root / f"service-{self._count}.log", "wb")  # noqa: SIM115
        with log:
            reaper = subprocess.Popen(
                [sys.executable, __file__, str(status), *SERVICE, self.url],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self._services.append(reaper)
        deadline = time.monotonic() + timeout
        while not self.ping():
            if status.exists() or time.monotonic() > deadline:
                raise RuntimeError(f"podman service did not start: {self.log_tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 30) -> None:
        """Stop the service (the engine goes away); containers keep running."""
        if not self._services or self._services[-1].poll() is not None:
            return
        reaper = self._services[-1]
        reaper.send_signal(signal.SIGTERM)  # forwarded to podman
        status = self.root / f"service-{self._count}.exit"
        deadline = time.monotonic() + timeout
        while not status.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("podman service did not stop")
            time.sleep(0.05)

    def ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(str(self.socket))
                s.sendall(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
                return s.recv(64).split(b"\r\n", 1)[0].endswith(b" 200 OK")
        except OSError:
            return False

    def log_tail(self) -> str:
        path = self.root / f"service-{self._count}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def client(self, timeout: float = 10) -> Any:
        import docker

        return docker.DockerClient(base_url=self.url, timeout=timeout)

    def run(self, name: str, script: str, **options: Any) -> Any:
        """Start a busybox container running `sh -c script` (no network); -> Container."""
        client = self.client()
        try:
            return client.containers.run(
                IMAGE, ["sh", "-c", script], name=name, detach=True, network_mode="none", **options
            )
        finally:
            client.close()

    # Tear-down ---------------------------------------------------------------------------

    def close(self) -> None:
        """Remove all containers, stop every service and reaper, delete the directory."""
        with contextlib.suppress(Exception):
            if (self.root / "storage.conf").exists():
                self.cli("rm", "--force", "--all", "--time=0")
        self.stop()
        for reaper in self._services:
            # With its containers gone a reaper exits by itself, unless an exec session's
            # conmon lingers (it waits 300 s for a cleanup command): a SIGTERM to a reaper
            # whose podman has exited makes it kill what is left of its children.
            with contextlib.suppress(subprocess.TimeoutExpired):
                reaper.wait(timeout=2)
            if reaper.poll() is None:
                reaper.send_signal(signal.SIGTERM)
                try:
                    reaper.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(reaper.pid, signal.SIGKILL)
                    reaper.wait()
        self._kill_leftovers()
        _unmount_below(self.root)
        shutil.rmtree(self.root, ignore_errors=True)

    def _kill_leftovers(self) -> None:
        """Last resort: anything still running from this storage (a conmon, a container)."""
        root = str(self.root)
        for pid in _pids():
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                if root in cmdline or os.readlink(f"/proc/{pid}/root").startswith(root):
                    os.kill(pid, signal.SIGKILL)


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _unmount_below(root: Path) -> None:
    """Podman unmounts on removal; this catches what a crash left behind."""
    mounts = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == str(root) or point.startswith(f"{root}/"):
                mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


# The image ---------------------------------------------------------------------------------


def busybox_binary(workdir: Path) -> Path:
    """The static busybox, from the busybox-static .deb (apt's cache, else `apt-get download`),
    else from the installed package."""
    debs = sorted(glob.glob("/var/cache/apt/archives/busybox-static_*.deb"))
    if not debs:
        subprocess.run(
            ["apt-get", "download", "busybox-static"], cwd=workdir, capture_output=True, check=False
        )
        debs = sorted(glob.glob(f"{workdir}/busybox-static_*.deb"))
    if debs:
        unpacked = workdir / "deb"
        subprocess.run(["dpkg", "-x", debs[-1], str(unpacked)], check=True, timeout=60)
        return unpacked / "bin" / "busybox"
    installed = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", "busybox-static"], capture_output=True, check=False
    )
    if installed.stdout.endswith(b" installed"):
        return Path("/bin/busybox")
    raise RuntimeError("no busybox-static: apt-get install busybox-static")


def rootfs_tar() -> Path:
    """A tar of a busybox root filesystem, built once per process."""
    global _ROOTFS_TAR  # noqa: PLW0603
    if _ROOTFS_TAR is None:
        work = Path(tempfile.mkdtemp(prefix="busybox-"))
        atexit.register(shutil.rmtree, work, True)
        binary = busybox_binary(work)
        applets = subprocess.run(
            [str(binary), "--list"], capture_output=True, check=True, text=True
        ).stdout.split()
        path = work / "rootfs.tar"
        with tarfile.open(path, "w") as tar:
            for name in ("bin", "proc", "sys", "dev", "etc", "tmp"):
                info = tarfile.TarInfo(name)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            tar.add(binary, "bin/busybox")
            for applet in applets:
                if applet != "busybox":
                    info = tarfile.TarInfo(f"bin/{applet}")
                    info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                    tar.addfile(info)
        _ROOTFS_TAR = path
    return _ROOTFS_TAR


# The reaper (this file run as a script) ----------------------------------------------------


def reap(status_file: str, command: list[str]) -> int:
    """Run `command` as a child subreaper; reap everything until no child is left.

    SIGTERM/SIGINT go to `command`; once it has exited, a SIGTERM kills the remaining
    children (orphans adopted from it). `command`'s exit status is written to `status_file`.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    child = os.posix_spawnp(command[0], command, dict(os.environ))
    alive = True
    terminating = False

    def kill_children() -> None:
        for pid in _pids():
            with contextlib.suppress(OSError):
                if _ppid(pid) == os.getpid():
                    os.kill(pid, signal.SIGKILL)

    def forward(signum: int, _frame: Any) -> None:
        nonlocal terminating
        if alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)
        else:
            terminating = True
            kill_children()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 1
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return code
        if pid == child:
            alive = False
            code = os.waitstatus_to_exitcode(status)
            tmp = f"{status_file}.tmp"
            Path(tmp).write_text(f"{code}\n")
            os.replace(tmp, status_file)
        if terminating:
            kill_children()  # the children of a killed process are this one's now


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])


if __name__ == "__main__":
    sys.exit(reap(sys.argv[1], sys.argv[2:]))

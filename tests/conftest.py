"""Shared fixtures: the real dataset, and small synthetic loaders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fashionmlp
from fashionmlp import DatasetNotFoundError, default_data_root
from fashionmlp.data import prepare_dataset, raw_folder


@pytest.fixture(scope="session")
def real_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root holding the real FashionMNIST; its absence fails the test (see missing_dataset).

    Uses the user's own copy when it is complete (read only), else lays the Debian
    package's files out in a temporary root.
    """
    user_root = default_data_root()
    names = (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
    if all((raw_folder(user_root) / name).is_file() for name in names):
        return user_root
    root = tmp_path_factory.mktemp("fashion-mnist")
    try:
        prepare_dataset(root)
    except DatasetNotFoundError as exc:
        missing_dataset(f"the real FashionMNIST is needed: {exc}")
    return root


#: Set to 1 to let the real-data tests skip where the dataset is missing (they fail otherwise).
ALLOW_MISSING = "FASHIONMLP_ALLOW_MISSING_DATA"


def missing_dataset(message: str) -> NoReturn:
    """Fail the test: a suite that silently skips its real-data tests proves little.

    ``FASHIONMLP_ALLOW_MISSING_DATA=1`` turns the failure into a skip, for a machine that
    cannot install the dataset; never in CI.
    """
    if os.environ.get(ALLOW_MISSING) == "1" and not os.environ.get("CI"):
        pytest.skip(message)
    pytest.fail(
        f"{message}. Install it (make data, or sudo apt-get install dataset-fashion-mnist), "
        f"or set {ALLOW_MISSING}=1 to skip the real-data tests on this machine",
        pytrace=False,
    )


def synthetic_loader(
    samples: int, batch_size: int, *, seed: int = 0
) -> DataLoader[tuple[torch.Tensor, ...]]:
    """A DataLoader over random images and labels, for tests that need no real data."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(samples, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (samples,), generator=generator)
    return DataLoader(TensorDataset(images, labels), batch_size=batch_size)


#: The Tensor methods that copy a value from the tensor's device to Python (a device sync
#: on a GPU): ``bool(t)``, ``float(t)``, ``int(t)``, ``t.item()``, ``t.tolist()``, ``t.cpu()``.
DEVICE_READS = ("__bool__", "__float__", "__int__", "item", "tolist", "cpu")
_SOURCE = str(Path(fashionmlp.__file__).resolve().parent) + os.sep


@pytest.fixture
def device_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every read of a tensor's value made by fashionmlp's own code.

    Each entry is ``"file:function:method"``. Reads made elsewhere (torch's own, the
    DataLoader's worker seed, the test's) are not counted; on the CPU these reads cost
    nothing, but on a GPU each one waits for the device, so the library makes as few as
    it can, and these counts are the guard that keeps it so.
    """
    reads: list[str] = []
    for method in DEVICE_READS:
        original = getattr(torch.Tensor, method)

        def counting(
            self: torch.Tensor,
            *args: Any,
            _method: str = method,
            _original: Any = original,
            **kwargs: Any,
        ) -> Any:
            code = sys._getframe(1).f_code
            if code.co_filename.startswith(_SOURCE):
                reads.append(f"{Path(code.co_filename).name}:{code.co_name}:{_method}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counting)
    return reads


def interruptible_run_options(data_root: Path) -> list[str]:
    """``fashionmlp train`` options for the interruption tests.

    The seed's recipe on the tensor backend: epochs of 100 small batches, each epoch's first
    printing a loss line, at which :func:`interrupt_at` stops the run.
    """
    return [
        "--recipe",
        "seed",
        "--backend",
        "tensor",
        "--epochs",
        "3",
        "--limit",
        "6400",
        "--seed",
        "8",
        "--device",
        "cpu",
        "--no-plots",
        "--data-root",
        str(data_root),
    ]


def start_cli(*arguments: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``python -m fashionmlp ARGUMENTS`` started, its output read as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "fashionmlp", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_for_line(process: subprocess.Popen[str], prefix: str) -> None:
    """Read ``process``'s output up to a line that starts with ``prefix``."""
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(prefix):
            return
    raise AssertionError(f"the process ended before printing {prefix!r}: {process.stderr}")


def interrupt_at(
    process: subprocess.Popen[str],
    prefix: str,
    signal_number: int = signal.SIGINT,
    *,
    after: str | None = None,
) -> str:
    """Signal ``process`` at a known point; its stderr, once it has ended.

    At the first line starting with ``prefix`` (after one starting with ``after``, when
    given) the process is stopped (SIGSTOP), sent ``signal_number``, and let go on
    (SIGCONT): it takes the signal a batch or two past that line, however busy the machine,
    so that epochs of a hundred small batches are enough to land it mid-epoch.
    """
    try:
        if after is not None:
            wait_for_line(process, after)
        wait_for_line(process, prefix)
        process.send_signal(signal.SIGSTOP)
        process.send_signal(signal_number)
        process.send_signal(signal.SIGCONT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    return err


class SmallDisk:
    """A tmpfs of a few pages mounted for one test: a real full or read-only disk."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mount(self, size: str, *, read_only: bool = False) -> None:
        """(Re)mount with ``size`` (as ``mount -o size=`` takes it) and writability."""
        options = f"size={size}" + (",ro" if read_only else "")
        command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(self.path)]
        if self.mounted:
            command = ["mount", "-o", f"remount,{options}", str(self.path)]
        subprocess.run(command, check=True, capture_output=True)

    @property
    def mounted(self) -> bool:
        return os.path.ismount(self.path)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A folder on which the test mounts a tiny tmpfs; skipped where mounting is not allowed."""
    disk = SmallDisk(tmp_path / "disk")
    disk.path.mkdir()
    try:
        disk.mount("64k")
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.skip(f"mounting a tmpfs needs root (CAP_SYS_ADMIN) here: {exc}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk.path)], check=False, capture_output=True)


class BatchCounter:
    """A callback with state: the batches it has seen, across resumes."""

    def __init__(self) -> None:
        self.batches = 0

    def on_batch_end(self, event: object) -> None:
        self.batches += 1

    def state_dict(self) -> dict[str, int]:
        return {"batches": self.batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batches = state["batches"]


def resave(path: Path, payload: object) -> None:
    """Write ``payload`` as a checkpoint of ours would be, sealed with its checksum: a
    checkpoint whose content is wrong but whose bytes are whole, as a faulty writer would
    leave it, for the checks behind the checksum to refuse."""
    import io

    from fashionmlp.checkpoint import _seal

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path.write_bytes(_seal(buffer.getvalue()))


def _postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (Debian's postgresql package), if any."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    return None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1, its database's SQLAlchemy URL.

    The server refuses to run as root, so as root it runs as the postgres user Debian's
    package made. A missing server fails the test in CI (``.ci/run`` installs it) and skips
    it elsewhere.
    """
    import getpass
    import shutil
    import socket
    import tempfile

    binaries = _postgres_bin()
    if binaries is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL's server is needed: apt-get install postgresql", pytrace=False)
        pytest.skip("PostgreSQL's server is not installed (apt-get install postgresql)")
    as_root = os.geteuid() == 0
    owner = "postgres" if as_root else getpass.getuser()
    prefix = ["runuser", "-u", owner, "--"] if as_root else []
    home = Path(tempfile.mkdtemp(prefix="fashionmlp-pg-"))
    home.chmod(0o755)
    if as_root:
        shutil.chown(home, owner)
    with socket.socket() as probe:  # a free port on the loopback
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def pg(*arguments: str) -> None:
        subprocess.run([*prefix, *arguments], check=True, capture_output=True, timeout=120)

    data = home / "data"
    pg(str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    server_options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg(
        str(binaries / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        server_options,
        "-l",
        str(home / "log"),
        "-w",
        "start",
    )
    try:
        pg(
            str(binaries / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "studies",
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/studies"
    finally:
        subprocess.run(
            [*prefix, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(home, ignore_errors=True)

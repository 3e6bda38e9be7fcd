"""Where the suite's files are and how they are named: the one home of every naming rule.

    ROOT/                                   the suite (this checkout)
      templates/<launcher template>.j2      launch-script templates
      experiments/generated/                rendered scripts + <matrix stem>.manifest.json
        <run><launcher suffix>              one script per run and launcher (.sh, .sbatch)
      logs/<matrix name>/                   a matrix's logs (its `log_dir` setting overrides)
        <run>.log, <run>.1.log, ...         one log per attempt, never reused (local runs)
        <run>.node<k>.log, <run>.node<k>.1.log, ...
                                            node k's log of a run launched by hand as several
                                            nodes (NODE_RANK=k > 0; node 0 writes <run>.log)
        <run>.<jobid>.log                   a Slurm job's log (#SBATCH --output)
        <log stem>.meta.json                the sidecar beside each log
        runs.json                           the status file of the matrix's runs

Paths inside the suite are written relative to ROOT in generated files and messages
(`display_path`) and read back from there (`suite`). Pure functions: nothing here touches the
disk except `next_log`, which looks at which names are taken.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Union

from . import fileio

ROOT = Path(__file__).resolve().parents[3]
"""The suite's root folder (the checkout holding tools/, templates/, experiments/)."""
TEMPLATES = ROOT / "templates"
GENERATED = ROOT / "experiments" / "generated"
"""Default output folder of tools/render.py."""
LOGS = "logs"
"""Folder of every matrix's default log folder, relative to ROOT."""
STATUS_FILE = "runs.json"

KNOBS = ("GPUS_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "MOCK_DATA", "DATA_PATH",
         "TOKENIZER_MODEL", "LOG_DIR", "LOG_FILE", "TRITON_CACHE_DIR", "PYTHON", "MEGATRON_LM_DIR",
         "TRAIN_CMD", "WANDB_MODE", "CHECKPOINT_DIR")
"""Environment variables a launch script reads as launch settings, in its header's order; the
script records those the caller set as overrides in the log's sidecar."""
SUITE_DIR = "SUITE_DIR"
"""Environment variable that tells a launch script where the suite is (default: found from
the script's own path)."""

PathLike = Union[str, Path]


def display_path(path: PathLike) -> str:
    """`path` relative to ROOT when inside it, else absolute (as generated files write it).

    A path under ROOT through a symlink (`logs/` linked to a scratch disk, as on many clusters)
    keeps its place in the suite ("logs/x/run.log"), so that runs.json and the sidecars stay
    right when the folder is copied back; other paths are resolved. A path that cannot be
    resolved (a symlink loop) is made absolute without resolving it."""
    plain = Path(os.path.abspath(path))
    try:
        return str(plain.relative_to(ROOT))
    except ValueError:
        pass
    try:
        path = Path(path).resolve()
    except (OSError, RuntimeError):
        path = plain
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def shown_name(name: str) -> str:
    """A file name as text that any writer can encode: bytes that are not UTF-8 (which Python
    keeps as lone surrogates, os.fsdecode's "surrogateescape") become `\\xNN` escapes, e.g. the
    stem of b"fp8\\xff.log" -> "fp8\\xff". Valid names come back unchanged."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")


def suite(path: PathLike) -> Path:
    """A path as written in a manifest or matrix: relative ones are taken from ROOT."""
    path = Path(path)
    return path if path.is_absolute() else ROOT / path


def default_log_dir(matrix_name: str) -> str:
    """A matrix's log folder when it sets no `log_dir`: "logs/<matrix name>" (relative to ROOT)."""
    return f"{LOGS}/{matrix_name}"


def script(out_dir: Path, run: str, suffix: str) -> Path:
    """A run's launch script for one launcher: <out_dir>/<run><suffix> (suffix ".sh", ".sbatch")."""
    return out_dir / f"{run}{suffix}"


def manifest(out_dir: Path, matrix_file: PathLike) -> Path:
    """The manifest of a matrix rendered into out_dir: <out_dir>/<matrix stem>.manifest.json."""
    return out_dir / f"{Path(matrix_file).stem}.manifest.json"


NODE_MARK = "node"
"""A node log's stem: <run>.node<k>[.<n>] for node rank k > 0 (`node_log`)."""


def attempt_log(folder: Path, run: str, n: int, node: int = 0) -> Path:
    """The log of a run's attempt n: <run>.log for n = 0, then <run>.<n>.log; for node rank
    node > 0 of a launch by hand as several nodes, <run>.node<node>.log, then
    <run>.node<node>.<n>.log."""
    stem = run if node == 0 else f"{run}.{NODE_MARK}{node}"
    return folder / (f"{stem}.log" if n == 0 else f"{stem}.{n}.log")


def next_log(folder: Path, run: str, node: int = 0) -> Path:
    """The first attempt log of `run` (of node rank `node`) in `folder` whose name is not taken
    (never reused): a name is taken by anything there, a dangling symlink included
    (os.path.lexists), so a link never sends a log outside its folder.

    The launch scripts apply the same rule in bash when no LOG_FILE is given (with their
    NODE_RANK)."""
    n = 0
    while os.path.lexists(attempt_log(folder, run, n, node)):
        n += 1
    return attempt_log(folder, run, n, node)


def claim_log(folder: Path, run: str, node: int = 0) -> Path:
    """Create the next attempt log of `run` (`next_log`) as an empty file, exclusively
    (O_CREAT | O_EXCL: never through a symlink, never a file another launch took a moment
    before) and return it. OSError when the folder cannot be written."""
    while True:
        log = next_log(folder, run, node)
        try:
            os.close(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            continue  # another launch took this name between the look and the create
        return log


def log_name(stem: str) -> tuple[str, int, int]:
    """The inverse of attempt_log and job_log for a log's stem: (run, node rank, attempt
    number or job id, -1 for the first attempt): "RUN" -> ("RUN", 0, -1), "RUN.3" ->
    ("RUN", 0, 3), "RUN.812345" -> ("RUN", 0, 812345), "RUN.node1" -> ("RUN", 1, -1),
    "RUN.node2.4" -> ("RUN", 2, 4)."""
    head, dot, tail = stem.rpartition(".")
    n = -1
    if dot and head and tail.isdigit():
        stem, n = head, int(tail)
    head, dot, tail = stem.rpartition(".")
    mark = tail[len(NODE_MARK):]
    if dot and head and tail.startswith(NODE_MARK) and mark.isdigit() and int(mark) > 0 \
            and mark == str(int(mark)):
        return head, int(mark), n
    return stem, 0, n


def run_of_log(stem: str) -> tuple[str, int]:
    """(run, attempt number or job id) of a log's stem, -1 for the first attempt, whichever
    node wrote it (`log_name`): "RUN.3" -> ("RUN", 3), "RUN.812345" -> ("RUN", 812345),
    "RUN" -> ("RUN", -1), "RUN.node1.2" -> ("RUN", 2)."""
    run, _, n = log_name(stem)
    return run, n


def node_run_name(run: str, node: int) -> str:
    """The name a node log is shown under when it has no node-0 log to join: <run>.node<k>
    (<run> for node 0)."""
    return run if node == 0 else f"{run}.{NODE_MARK}{node}"


def job_log(folder: PathLike, run: str, job_id: str) -> str:
    """A batch job's log: <folder>/<run>.<job_id>.log; job_id may be a placeholder ("%j")."""
    return f"{folder}/{run}.{job_id}.log"


def job_sidecar(folder: PathLike, run: str, job_id: str) -> str:
    """The sidecar of a batch job's log: <folder>/<run>.<job_id>.meta.json."""
    return job_log(folder, run, job_id)[: -len(".log")] + ".meta.json"


def sidecar_of(log: Path) -> Path:
    """The sidecar beside a log: X.log -> X.meta.json (the launch scripts' default META_FILE)."""
    name = log.name[: -len(".log")] if log.name.endswith(".log") else log.name
    return log.with_name(name + ".meta.json")


TENSORBOARD = "tensorboard"


def tensorboard_dir(log_dir: Path, run: str) -> Path:
    """A run's --tensorboard-dir, as the launch scripts pass it: <log dir>/tensorboard/<run>/events."""
    return log_dir / TENSORBOARD / run / "events"


def profiler_trace(log_dir: Path, run: str, rank: int = 0) -> Path:
    """Where Megatron's PyTorch profiler writes rank `rank`'s trace for a run whose
    --tensorboard-dir is `tensorboard_dir(log_dir, run)`: <tensorboard-dir>/../torch_profile/
    rank-<rank>.json.gz (trace_handler in megatron/training/training.py)."""
    return tensorboard_dir(log_dir, run).parent / "torch_profile" / f"rank-{rank}.json.gz"


def kernel_table_of(log: Path) -> Path:
    """The kernel table beside a log: X.log -> X.kernels.json (fp8suite.logs.kernels)."""
    name = log.name[: -len(".log")] if log.name.endswith(".log") else log.name
    return log.with_name(name + ".kernels.json")


def status_file(folder: Path) -> Path:
    """The status file of a matrix's runs in a log folder: <folder>/runs.json."""
    return folder / STATUS_FILE


MIN_LOG_FREE_MB = 1
"""Free space a log folder must have before a launch: room for a log's first lines and its
sidecar (the launch script then checks the matrix's min_free_gb)."""


def writable_problem(folder: Path) -> str:
    """'' when `folder` can be created, a file can be created in it and removed, and it has
    MIN_LOG_FREE_MB free; else one line on why not (for a log folder before a launch)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            return "not a folder"
        fileio.probe_write(folder)
        free_mb = shutil.disk_usage(folder).free / 2**20
    except OSError as err:
        return f"cannot be written: {err.strerror or err}"
    if free_mb < MIN_LOG_FREE_MB:
        return f"{free_mb:.1f} MB free, needs {MIN_LOG_FREE_MB} MB: free some space or set LOG_DIR"
    return ""

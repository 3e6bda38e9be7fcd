"""Find training logs on disk and load what sits beside them: the launch sidecar and manifest.

A run is one log file; its name is the file stem (`logs/h200_8b/train_llama3_8b_h200_fp8_cs.log`
-> `train_llama3_8b_h200_fp8_cs`). Beside `X.log` the launch script may write `X.meta.json`:

    {"run", "script", "script_sha256", "log", "started", "ended", "exit_code", "host",
     "overrides": {"args": [...], "env": {...}}, "launch_env": {...},
     "environment": {"gpu": {"name", "count", "driver", "memory_mib", "compute_capability"},
                     "python", "torch", "cuda", "transformer_engine", "megatron_core", "apex"}}

Any field may be missing; a sidecar that is not valid JSON becomes a note on the run, never an
error. A manifest (`experiments/generated/<matrix>.manifest.json`) is optional and only adds
labels (axes, GPU) to runs it names.

Nodes: a run launched by hand as several nodes writes one log per node, `RUN.log` on node 0
and `RUN.node<k>.log` on node k (then `RUN.1.log`, `RUN.node<k>.1.log`, ... ); the logs of one
launch are joined into one run (`nodes`), named by node 0's log and listing every node's
(`LoggedRun.nodes`). A node log with no node-0 log of its launch is a run of its own,
`RUN.node<k>`, with a note.

Attempts: `RUN.log`, `RUN.1.log`, `RUN.2.log`, ... (the launch script's repeat number, or
Slurm's job id `RUN.<jobid>.log`) in one directory are attempts of one run `RUN`. The report
shows the run once: its latest completed attempt, else its latest attempt, with every attempt
listed (`LoggedRun.attempts`). An attempt that resumed from a checkpoint an earlier attempt
saved (`--save`/`--load` on one folder after a time limit or a kill) continues it: together
they are one candidate, judged by its last attempt, and when shown they are stitched into one
run (`resume`): one set of steps, one segment per launch, runtime without the downtime between
them, the last attempt's status. Attempts that started afresh (a restart after a crash) stay
apart, listed.

Bad usage (a path that does not exist, no logs at all, a broken manifest) raises `UsageError`
with one line. A log that cannot be read or parsed becomes a run with status "unreadable".
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from . import endstatus
from ..common import fileio
from . import kernels
from . import nodes
from ..common import paths
from . import resume
from ..megatron import logvocab as V
from ..common.paths import shown_name
from ..common import status as S
from ..common.errors import UsageError
from ..megatron.logvocab import arg_int
from .parse import ParsedLog, Status, Steps, recognised
from .stream import read_log


@dataclass
class Attempt:
    """One launch of a run: its own log."""

    path: str
    status: str
    reason: str
    iterations_done: Optional[int]
    iterations_planned: Optional[int]
    resumed_at: Optional[int] = None  # the checkpoint iteration it loaded, None when fresh
    segment: bool = False  # a segment of the run shown (stitched), not a separate attempt
    nodes: list = field(default_factory=list)  # every node's log of the launch, or []
    started: Optional[str] = None  # the sidecar's launch time (ISO 8601), None without one
    # Median iteration time (ms) of a completed launch that started afresh, the rule of the
    # run's own; set by metrics.summarize, None otherwise.
    median_iter_ms: Optional[float] = None
    mean_iter_ms: Optional[float] = None  # the mean of the same iterations (metrics.summarize)
    log: Optional[ParsedLog] = field(default=None, repr=False, compare=False)
    kernel_table: Optional[dict] = field(default=None, repr=False, compare=False)  # beside its log


@dataclass
class LoggedRun:
    """One log found on disk, with its sidecar and manifest entry (what the report reads);
    after `group_attempts`, one run with every attempt listed."""

    name: str
    path: str  # as found from the command-line input (relative inputs stay relative)
    directory: str  # the log's directory, same convention
    log: ParsedLog
    sidecar: dict = field(default_factory=dict)  # {} when absent or unreadable
    manifest: dict = field(default_factory=dict)  # this run's manifest entry, {} when none
    notes: list = field(default_factory=list)  # problems with side files, one line each
    attempts: list = field(default_factory=list)  # [Attempt], oldest first; [] for one log
    stitched: list = field(default_factory=list)  # paths of the logs stitched into it, or []
    nodes: list = field(default_factory=list)  # its nodes' logs (node 0 first) when joined, or []
    kernel_table: Optional[dict] = None  # <run>.kernels.json beside the log (fp8suite.logs.kernels)


# Folders inside a log directory that hold other tools' logs, not training runs: W&B's offline
# files (the launch scripts' default --wandb-save-dir is $LOG_DIR/wandb, with debug.log and
# debug-internal.log in every run folder) and hidden scratch folders.
SKIPPED_DIRS = ("wandb",)


def _skipped(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts[:-1]
    return any(p in SKIPPED_DIRS or p.startswith(".") for p in parts)


def find_logs(inputs: list) -> list:
    """Every `*.log` under the given directories (recursively, outside SKIPPED_DIRS and hidden
    folders) plus the given files, sorted within each input and without duplicates."""
    found, seen = [], set()
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            try:
                paths = sorted(q for q in p.rglob("*.log") if q.is_file() and not _skipped(q, p))
            except OSError as e:
                raise UsageError(f"cannot read {raw}: {e.strerror or e}") from None
        elif p.is_file():
            paths = [p]
        elif p.exists():
            raise UsageError(f"{raw}: not a file or directory")
        else:
            raise UsageError(f"{raw}: no such file or directory")
        for q in paths:
            key = os.path.realpath(q)
            if key not in seen:
                seen.add(key)
                found.append(q)
    if not found:
        where = ", ".join(str(i) for i in inputs)
        raise UsageError(f"no *.log files found in {where}")
    return found


NOT_TRAINING_LOG = "not a Megatron training log (no iteration or argument lines)"
"""Why a file is no run: the words of every message that names such a file."""


def training_runs(loaded: list, inputs: list) -> tuple[list, list]:
    """(runs, skipped): the runs whose logs hold Megatron training-log content
    (parse.recognised), and the paths of the others, found by a folder scan (a folder may
    hold other programs' *.log files). A file named as an input that holds none is bad usage:
    UsageError, naming it as given. A crashed or cut-off log with Megatron's lines stays a
    run with its status."""
    named = {os.path.realpath(i): i for i in inputs if Path(i).is_file()}
    kept, skipped = [], []
    for run in loaded:
        files = run.stitched or run.nodes or [run.path]
        if recognised(run.log):
            kept.append(run)
            continue
        for f in files:
            if os.path.realpath(f) in named:
                raise UsageError(f"{named[os.path.realpath(f)]}: {NOT_TRAINING_LOG}")
        skipped.append(run.path)
    return kept, skipped


MAX_SIDECAR_BYTES = 16 * 1024 * 1024
"""Largest sidecar (<run>.meta.json) read (bytes); one holds a few KB of launch details."""


def load_sidecar(log_path: Path) -> tuple[dict, Optional[str]]:
    """(sidecar dict, note or None) for `X.meta.json` beside `X.log`."""
    meta = paths.sidecar_of(log_path)
    if not os.path.lexists(meta):
        return {}, None
    shown = shown_name(meta.name)
    try:
        # A FIFO, a device or a link to /dev/zero is refused, not read: it could hang or never end.
        data = json.loads(fileio.read_text_regular(meta, MAX_SIDECAR_BYTES))
    except OSError as e:
        return {}, f"sidecar {shown} unreadable ({e.strerror or _one_line(e)}); launch details missing"
    except (ValueError, RecursionError) as e:
        return {}, f"sidecar {shown} unreadable ({_one_line(e)}); launch details missing"
    if not isinstance(data, dict):
        return {}, f"sidecar {shown} is not a JSON object; launch details missing"
    return data, None


def load_manifest(path: Optional[str]) -> dict:
    """{run name: manifest entry} from a generated manifest, {} without one."""
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"cannot read manifest {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise UsageError(f"manifest {path} is not valid JSON: {_one_line(e)}") from None
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, list):
        raise UsageError(f"manifest {path}: expected an object with a \"runs\" list")
    for i, r in enumerate(runs):
        value = r.get("predicted_speedup") if isinstance(r, dict) else None
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not value > 0 or value == float("inf")):
            raise UsageError(f"manifest {path}: runs[{i}].predicted_speedup: {value!r}: a "
                             "positive number (the speedup over BF16 the matrix predicts)")
        band = r.get("predicted_speedup_band") if isinstance(r, dict) else None
        if band is not None and (isinstance(band, bool) or not isinstance(band, (int, float))
                                 or not 0 <= band < float("inf")):
            raise UsageError(f"manifest {path}: runs[{i}].predicted_speedup_band: {band!r}: a "
                             "number >= 0 (the prediction's ± share)")
        reasons = r.get("predicted_speedup_extrapolated") if isinstance(r, dict) else None
        if reasons is not None and (not isinstance(reasons, list) or not all(isinstance(x, str) for x in reasons)):
            raise UsageError(f"manifest {path}: runs[{i}].predicted_speedup_extrapolated: {reasons!r}: a "
                             "list of reasons (strings)")
    return {r["name"]: r for r in runs if isinstance(r, dict) and isinstance(r.get("name"), str)}


def manifest_entry(manifest: dict, stem: str) -> dict:
    """The manifest entry of a log: by its stem, else without the `.N` the launch script adds
    for a repeated launch (`RUN.1.log`) or Slurm for the job id (`RUN.<jobid>.log`)."""
    if stem in manifest:
        return manifest[stem]
    base = paths.run_of_log(stem)[0]
    return manifest.get(base, {})


# Progress goes to stderr only when it helps: many logs, or enough bytes to take a while.
PROGRESS_MIN_LOGS = 10
PROGRESS_MIN_BYTES = 50_000_000


def load_runs(paths: list, manifest: dict, progress: Optional[Callable] = None) -> list:
    """Parse every log (reading bytes) and attach its sidecar and manifest entry; the logs of
    one launch on several nodes are joined into one run (`nodes`)."""
    sizes = []
    for p in paths:
        try:
            sizes.append(p.stat().st_size)
        except OSError:
            sizes.append(0)  # reported on the run itself
    if len(paths) < PROGRESS_MIN_LOGS and sum(sizes) < PROGRESS_MIN_BYTES:
        progress = None
    sidecars = [load_sidecar(p) for p in paths]
    launches = [nodes.launch_of(p, side) for p, (side, _) in zip(paths, sidecars)]
    for i in nodes.candidates(launches):
        nodes.add_log_span(launches[i], paths[i])
    joined, strays = nodes.pair(launches)
    members = {j for js in joined.values() for j in js}
    # Progress counts launches read, [k/n] over n = the logs less the node logs read with
    # their node 0: each step is one, whether a launch wrote one log or several.
    total = len(paths) - len(members)
    if progress:
        progress(f"parsing {len(paths)} logs, {_mb(sum(sizes))}"
                 + (f" ({total} launch{'es' if total != 1 else ''}: node logs "
                    "read with their node 0)" if members else ""))
    runs = []
    done = 0
    for i, (p, size) in enumerate(zip(paths, sizes)):
        if i in members:
            continue  # parsed with its node 0
        group = [i] + joined.get(i, [])
        done += 1
        if progress:
            others = len(group) - 1
            with_nodes = f" + {others} node log{'s' if others > 1 else ''}" if others else ""
            progress(f"[{done}/{total}] {p.stem}{with_nodes} {_mb(sum(sizes[k] for k in group))}")
        sidecar, note = sidecars[i]
        notes = [note] if note else []
        logs = [str(p)]
        if i in joined:
            log, sidecar, logs, more = _join([(launches[k].node, paths[k], sidecars[k][0])
                                              for k in group])
            notes += more + [n for k in joined[i] if (n := sidecars[k][1])]
        else:
            log = _parse(p, size)
            if i in strays:
                notes.append(nodes.stray_note(launches[i].run, launches[i].node))
            elif launches[i].node == 0 and (missing := nodes.missing_nodes_note(sidecar)):
                notes.append(missing)
        kernel_table, kernel_note = kernels.table_beside(p)
        if kernel_note:
            notes.append(kernel_note)
        earlier = log.earlier_launches
        for k, launch in enumerate(earlier, 1):
            # A fresh launch appended to the same file (tee -a, --open-mode=append): an
            # attempt of the run of its own, never merged into the last launch.
            runs.append(LoggedRun(name=shown_name(p.stem),
                                  path=shown_name(f"{p} (launch {k} of {len(earlier) + 1})"),
                                  directory=shown_name(str(p.parent)), log=launch, sidecar={},
                                  manifest=manifest_entry(manifest, p.stem)))
        if not len(log.steps) and (held := iteration_lines_beside(p, log.args)):
            notes.append(f"its iteration lines are in {held} (the last pipeline rank's output)")
        if earlier:
            notes.append(f"{p.name} holds {len(earlier) + 1} launches that each started "
                         "afresh (no checkpoint loaded): the last is shown, the others are "
                         "listed as attempts and not merged into it")
        runs.append(LoggedRun(
            name=shown_name(p.stem),
            path=shown_name(str(p)),
            directory=shown_name(str(p.parent)),
            log=log,
            sidecar=sidecar,
            manifest=manifest_entry(manifest, p.stem),
            notes=notes,
            nodes=logs if len(logs) > 1 else [],
            kernel_table=kernel_table,
        ))
    return group_attempts(runs)


def _parse(p: Path, size: int) -> ParsedLog:
    try:
        return read_log(p)  # streamed, never read whole, when it is large
    except OSError as e:
        return unreadable_log(f"cannot read the log: {e.strerror or _one_line(e)}", size)
    except Exception as e:  # a parser bug must not stop the other runs
        return unreadable_log(f"cannot parse the log: {type(e).__name__}: {_one_line(e)}", size)


def _join(parts: list) -> tuple:
    """(ParsedLog, sidecar, [log paths joined], notes) of one launch's node logs: `parts` is
    [(node rank, path, sidecar)], node 0 first."""
    read, used, notes = [], [], []
    for node, path, side in parts:
        try:
            read.append((node, path.read_bytes(), side))
            used.append((node, str(path)))
        except OSError as e:
            if node == 0:
                return (unreadable_log(f"cannot read the log: {e.strerror or _one_line(e)}"),
                        side, [str(path)], [])
            notes.append(f"node {node}'s log {path.name} cannot be read "
                         f"({e.strerror or _one_line(e)}); joined without it")
    try:
        log, more = nodes.join(read)
    except Exception as e:  # a parser bug must not stop the other runs
        log, more = unreadable_log(f"cannot parse the log: {type(e).__name__}: {_one_line(e)}",
                                   sum(len(data) for _, data, _ in read)), []
    sidecar = nodes.joined_sidecar([(node, side) for node, _, side in read])
    names = ", ".join(f"`{os.path.basename(p)}` (node {node})" for node, p in used)
    notes.insert(0, f"one launch on {len(used)} nodes, its logs joined: {names}")
    return log, sidecar, [p for _, p in used], notes + more


# How much of the folder `iteration_lines_beside` looks through, and of each file.
_BESIDE_FILES = 200
_BESIDE_BYTES = 4 << 20


def iteration_lines_beside(path: Path, args: dict) -> str:
    """The file beside a pipeline-parallel rank-0 log (its folder and sub-folders, e.g.
    torchrun's `--log-dir` layout `attempt_0/7/stdout.log`) that holds the run's iteration
    lines: one whose first 4 MiB have a Megatron iteration line, the one naming the last rank
    when several do. '' when the run is not pipeline-parallel or no such file is there."""
    if not endstatus.iterations_elsewhere(args):
        return ""
    world = arg_int(args, "world_size")
    found = []
    try:
        candidates = itertools.islice((q for q in sorted(path.parent.rglob("*"))
                                       if q != path and q.is_file() and not q.is_symlink()),
                                      _BESIDE_FILES)
        for q in candidates:
            try:
                with open(q, "rb") as f:
                    head = f.read(_BESIDE_BYTES)
            except OSError:
                continue
            if V.ANCHOR.search(head):
                found.append(q)
    except OSError:
        return ""
    if not found:
        return ""
    last = [q for q in found if world and re.search(rf"(?<!\d){world - 1}(?!\d)",
                                                    str(q.relative_to(path.parent)))]
    return str((last or found)[0])


def unreadable_log(reason: str, size: int = 0) -> ParsedLog:
    """A ParsedLog with status "unreadable" and nothing else."""
    return ParsedLog(size_bytes=size, steps=Steps(), validations=[], memory_peak_mb={}, args={},
                     args_dumps=0, status=Status(S.UNREADABLE, reason))


def attempt_of(stem: str) -> tuple[str, int]:
    """(run name, attempt number or -1): `RUN.3` -> ("RUN", 3), `RUN` -> ("RUN", -1)
    (the naming rule is paths.run_of_log)."""
    return paths.run_of_log(stem)


def group_attempts(runs: list) -> list:
    """One LoggedRun per (directory, run name; a node log shown alone is run RUN.node<k>): the
    latest completed attempt, else the latest one, among the attempts no later attempt
    continues; every attempt listed in `attempts`. When that attempt continues earlier ones from their checkpoints, they are stitched into it
    (`resume.stitch`). Order: as the runs came, by their first attempt."""
    by_key: dict = {}
    for r in runs:
        run, node, n = paths.log_name(r.name)
        # A node log shown alone (no node-0 log to join) is a run of its own: RUN.node<k>.
        by_key.setdefault((r.directory, paths.node_run_name(run, node)), []).append((n, r))
    out = []
    for (directory, name), found in by_key.items():
        found.sort(key=lambda x: x[0])
        tries = [r for _, r in found]
        if len(tries) == 1 and found[0][0] < 0:
            note = resume.unmatched_load(tries[0].log)
            if note:
                tries[0].notes.append(note)
            out.append(tries[0])
            continue
        # Candidates: the attempts no later attempt continues, each with the attempts it
        # continues (a chain is judged by its last attempt).
        preds = resume.predecessors([r.log for r in tries])
        ends = [j for j in range(len(tries)) if j not in preds]
        done = [j for j in ends if tries[j].log.status.name in S.FINISHED]
        shown = (done or ends)[-1]
        links = resume.chain(preds, shown)
        chosen = tries[shown]
        chosen.attempts = [Attempt(r.path, r.log.status.name, r.log.status.reason,
                                   r.log.status.last_iteration, r.log.status.planned_iterations,
                                   (resume.resumed_at(r.log) or (None,))[0],
                                   len(links) > 1 and j in links, list(r.nodes),
                                   _started(r.sidecar), log=r.log, kernel_table=r.kernel_table)
                           for j, r in enumerate(tries)]
        note = resume.unmatched_load(tries[links[0]].log)
        if len(links) > 1:
            _stitch(chosen, [tries[j] for j in links])
        if note:
            chosen.notes.append(note)
        if not chosen.manifest:
            chosen.manifest = next((r.manifest for r in tries if r.manifest), {})
        chosen.name = name
        out.append(chosen)
    return out


def _started(sidecar: dict) -> Optional[str]:
    started = sidecar.get("started")
    return started if isinstance(started, str) else None


def _stitch(chosen: LoggedRun, parts: list) -> None:
    """Make `chosen` (the last of `parts`) the one run its resumed launches make up."""
    names = ", ".join(f"`{os.path.basename(r.path)}`" for r in parts)
    at = ", ".join(str(resume.resumed_at(r.log)[0]) for r in parts[1:])
    log, lost = resume.stitch([r.log for r in parts])
    chosen.log = log
    chosen.stitched = [p for r in parts for p in (r.nodes or [r.path])]
    chosen.notes.append(
        f"one run in {len(parts)} segments ({names}), each resumed from the previous one's "
        f"checkpoint (at iteration {at})"
        + (f"; {lost} iteration{'s' if lost != 1 else ''} logged past the checkpoint the next "
           f"segment resumed from {'were' if lost != 1 else 'was'} lost and left out"
           if lost else "")
        + "; runtime is the sum of the segments, without the downtime between launches")
    for r in parts[:-1]:
        chosen.notes.extend(n for n in r.notes if n not in chosen.notes)


def stderr_progress(line: str) -> None:
    """A progress callback for `load_runs`: print its line to stderr."""
    print(line, file=sys.stderr, flush=True)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e6:.2f} MB"


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())

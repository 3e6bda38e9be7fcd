"""The manifest (resolved settings of every run) and writing or checking generated files.

Generated files are written all at once after every check passed: each to a temporary file
first, then renamed into place, so a failure leaves the old files intact. Files that an
earlier render listed in the manifest and this one no longer produces are removed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from ..evidence import advice
from ..common import fileio
from ..config import memory
from ..common import paths
from ..evidence import predict
from ..megatron import recipes
from ..config.schema import parallel
from ..megatron.flags import load_snapshot, snapshot_path, tokens
from ..config.schema import Matrix
from ..common.paths import display_path
from . import scripts
from .templating import Rendered, log_dir

MAX_MANIFEST_BYTES = 64 * 1024 * 1024
"""Largest manifest read back (bytes); one of 256 runs is a few MB."""


def manifest(matrix: Matrix, matrix_file: str, rendered: list[Rendered]) -> dict[str, Any]:
    """The manifest of one render as a JSON-ready dict: the matrix, its flag snapshot and one
    entry per run (scripts per launcher, label, recipe, GPU, parallel layout, shape, log
    folder, Megatron argv)."""
    version = rendered[0].run.settings.target.megatron_core if rendered else ""
    snapshot = load_snapshot(version) if version else None
    return {
        "matrix": matrix_file,
        "name": matrix.name,
        "description": matrix.description,
        "generated_by": "tools/render.py",
        "flag_snapshot": display_path(snapshot_path(version)) if snapshot is not None else None,
        "runs": [_run_entry(r, matrix, snapshot or {}) for r in rendered],
    }


def predicted(run) -> Optional[predict.Prediction]:
    """The run's predicted FP8 speedup (predict.predict_run), or None where a committed log shows
    its settings crash (an advice entry with `crashed:`): no speedup is claimed for a run the
    suite expects to fail."""
    return None if advice.crashes(run) else predict.predict_run(run)


def _run_entry(r: Rendered, matrix: Matrix, snapshot: dict) -> dict[str, Any]:
    run, s = r.run, r.run.settings
    numerics = recipes.of_flags(run.flags)
    par = parallel(run)
    argv = [t for flag, value in run.flags.items() for t in tokens(flag, value, snapshot.get(flag))[0]]
    peak = memory.for_run(run)
    prediction = predicted(run)
    return {
        "name": run.name,
        "scripts": {name: path for name, (path, _) in r.scripts.items()},
        "axes": run.axes,
        "label": numerics.label,
        "recipe": numerics.short,
        "format": numerics.fmt,
        "gpu": s.target.gpu,
        "nodes": s.target.nodes,
        "gpus_per_node": s.target.gpus_per_node,
        "parallel": {"tp": par.tp, "pp": par.pp, "cp": par.cp, "dp": par.dp},
        "seq_length": run.flags.get("--seq-length"),
        "micro_batch_size": run.flags.get("--micro-batch-size"),
        "global_batch_size": run.flags.get("--global-batch-size"),
        "train_iters": run.flags.get("--train-iters"),
        "peak_memory_gib": None if peak is None else round(peak[0].total, 1),
        "advice": advice.manifest_records(advice.for_run(run)),
        # The number with its band and why it extrapolates (predict.Prediction.manifest).
        **(prediction.manifest() if prediction else predict.NO_PREDICTION),
        "log_dir": log_dir(matrix, run),
        "env": {k: str(v) for k, v in s.env.items()},
        "data": {
            "mock_data": s.data.mock_data, "data_path": s.data.data_path, "split": s.data.split,
            "tokenizer_type": s.data.tokenizer_type, "tokenizer_model": s.data.tokenizer_model,
            "vocab_size": s.data.vocab_size,
        },
        "gradient_accumulation_fusion": s.gradient_accumulation_fusion,
        "wandb": None if s.wandb is None else {"project": s.wandb.project, "entity": s.wandb.entity},
        "megatron_args": argv,
    }


def files(matrix: Matrix, matrix_file: str, rendered: list[Rendered], out_dir: Path) -> dict[Path, str]:
    """Every file a render produces: path -> content."""
    out: dict[Path, str] = {}
    for r in rendered:
        for path, text in r.scripts.values():
            out[paths.suite(path)] = text
    data = manifest(matrix, matrix_file, rendered)
    out[manifest_path(out_dir, matrix_file)] = json.dumps(data, indent=2) + "\n"
    return out


def manifest_path(out_dir: Path, matrix_file: str) -> Path:
    """Where a render of `matrix_file` into out_dir writes its manifest (`paths.manifest`)."""
    return paths.manifest(out_dir, matrix_file)


def previous_files(manifest_file: Path) -> list[Path]:
    """Files an earlier render of the same matrix produced (from its manifest)."""
    try:
        data = json.loads(fileio.read_regular(manifest_file, MAX_MANIFEST_BYTES))
        # Manifests before per-launcher scripts named them "script" and "sbatch".
        return [paths.suite(p) for r in data["runs"]
                for p in (*r.get("scripts", {}).values(), *(r[k] for k in ("script", "sbatch") if k in r))]
    except (OSError, ValueError, KeyError, TypeError):
        return []


EVIDENCE_KEYS = ("advice", "predicted_speedup", "predicted_speedup_band",
                 "predicted_speedup_extrapolated")
"""Manifest keys of a run that the committed logs decide (the advice's measured cost, the
predictor's figures), not the matrix: they change when logs land or are absent, while the
launch does not."""


def _without_evidence(text: str) -> Any:
    """The manifest's JSON with each run's EVIDENCE_KEYS left out; None if it is not JSON."""
    try:
        data = json.loads(text)
        for run in data.get("runs", []):
            for key in EVIDENCE_KEYS:
                run.pop(key, None)
        return data
    except (ValueError, AttributeError, TypeError):
        return None


def stale(expected: dict[Path, str], manifest_file: Path, evidence: bool = True) -> list[str]:
    """Why the generated files on disk differ from what a render would write, one line each.
    evidence=False ignores the manifest's EVIDENCE_KEYS (run.py: a launch needs the scripts and
    settings current, not the advice and predictions of logs the host may not have)."""
    out = []
    for path, text in expected.items():
        if not os.path.lexists(path):
            out.append(f"{display_path(path)} is missing")
        elif not fileio.same_content(path, text) and (
                evidence or path != manifest_file or _manifest_differs(path, text)):
            out.append(f"{display_path(path)} is out of date")
    for path in previous_files(manifest_file):
        if path not in expected and path.exists():
            out.append(f"{display_path(path)} is left over from a run the matrix no longer has")
    return out


def _manifest_differs(path: Path, text: str) -> bool:
    """Whether the manifest on disk differs from `text` beyond EVIDENCE_KEYS."""
    try:
        on_disk = fileio.read_text_regular(path, MAX_MANIFEST_BYTES)
    except (OSError, ValueError):
        return True
    mine = _without_evidence(text)
    return mine is None or _without_evidence(on_disk) != mine


def write(expected: dict[Path, str], manifest_file: Path) -> int:
    """Write changed files atomically, remove left-overs; returns how many files changed.

    All changed files are staged first and renamed into place together (fileio.Staged): a
    write that fails (OSError: a full disk, a FIFO or a folder where a file should be) leaves
    the folder as it was, with no temporary file behind."""
    leftovers = [p for p in previous_files(manifest_file) if p not in expected and p.exists()]
    executable = scripts.suffixes()
    with fileio.Staged() as staged:
        for path, text in expected.items():
            if fileio.same_content(path, text):
                continue
            staged.add(path, text, mode=0o755 if path.suffix in executable else 0o644)
        changed = len(staged)
    for path in leftovers:
        path.unlink()
    return changed + len(leftovers)

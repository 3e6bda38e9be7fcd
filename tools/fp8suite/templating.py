"""Expanded runs -> launch scripts, through the Jinja2 templates in templates/.

All decisions and all shell quoting happen here; the templates only lay out prepared values
(loops and conditionals, no logic). Output is deterministic: no timestamps, and paths inside
the suite are written relative to it.
"""

from __future__ import annotations

import os
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from . import paths, recipes
from .checks import NVTE_ATTN
from .matrix import Run
from .megatron_flags import load_snapshot, tokens
from .schema import Matrix



@dataclass(frozen=True)
class Rendered:
    run: Run
    script: str
    """Path of the launch script, relative to the suite's root (or absolute outside it)."""
    sbatch: str
    script_text: str
    sbatch_text: str


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(paths.TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        # bash's ${#array[@]} would open a Jinja comment: use a delimiter bash never writes.
        comment_start_string="<%#",
        comment_end_string="#%>",
    )


def log_dir(matrix: Matrix, run: Run) -> str:
    """The run's log folder as written in the matrix (relative to the suite's root)."""
    return run.settings.log_dir or paths.default_log_dir(matrix.name)


def render_runs(matrix: Matrix, runs: list[Run], matrix_file: str, out_dir: Path) -> list[Rendered]:
    env = environment()
    train = env.get_template("train.sh.j2")
    sbatch = env.get_template("sbatch.sh.j2")
    out = []
    for run in runs:
        script = paths.display_path(paths.script(out_dir, run.name, ".sh"))
        batch = paths.display_path(paths.script(out_dir, run.name, ".sbatch"))
        ctx = context(matrix, run, matrix_file, script, batch, out_dir)
        out.append(Rendered(run, script, batch, train.render(ctx), sbatch.render(ctx)))
    return out


def context(matrix: Matrix, run: Run, matrix_file: str, script: str, batch: str,
            out_dir: Path) -> dict[str, Any]:
    s = run.settings
    numerics = recipes.of_flags(run.flags)
    snapshot = load_snapshot(s.target.megatron_core) or {}
    groups = []
    for group, flags in run.groups.items():
        lines = [" ".join(shell_word(t) for t in tokens(flag, value, snapshot.get(flag))[0])
                 for flag, value in flags.items()]
        groups.append({"array": f"{group.upper()}_ARGS", "lines": [ln for ln in lines if ln]})
    logs = log_dir(matrix, run)
    wandb = None
    if s.wandb is not None:
        wandb = {
            "project": shell_word(s.wandb.project),
            "entity": shell_word(s.wandb.entity) if s.wandb.entity else "",
            "save_dir": suite_path(s.wandb.save_dir) if s.wandb.save_dir else '"$LOG_DIR/wandb"',
            # Megatron logs loss curves to W&B through its TensorBoard writer.
            "tensorboard": "--tensorboard-dir" not in run.flags,
        }
    return {
        "matrix_file": matrix_file,
        "matrix_name": matrix.name,
        "run": run.name,
        "label": numerics.label + "".join(f"; {k}={v}" for k, v in run.axes.items() if k != "recipe"),
        "description": textwrap.wrap(matrix.description, 95),
        "script_path": script,
        "sbatch_path": batch,
        "script_arg": shell_word(script),
        "matrix_arg": shell_word(matrix_file),
        "root_from_script": os.path.relpath(paths.ROOT, out_dir.resolve()),
        "knobs": " \\\n            ".join(_knob_lines()),
        "gpus_per_node": s.target.gpus_per_node,
        "nodes": s.target.nodes,
        "attention_backend": run.flags.get("--attention-backend", "auto"),
        "unset_env": [name for name in NVTE_ATTN if name not in s.env],
        "env": [(name, shell_word(env_value(value))) for name, value in s.env.items()],
        "triton_cache_dir": suite_path(s.triton_cache_dir),
        "min_free_mb": int(s.min_free_gb * 1024),
        "data": {
            "mock": "1" if s.data.mock_data else "0",
            "data_path": suite_words(s.data.data_path),
            "split": shell_word(s.data.split),
            "tokenizer_type": shell_word(s.data.tokenizer_type),
            "tokenizer_model": tokenizer_arg(s.data.tokenizer_model),
            "vocab_size": str(s.data.vocab_size) if s.data.vocab_size is not None else "",
        },
        "groups": groups,
        "fusion": s.gradient_accumulation_fusion,
        "log_dir": suite_path(logs),
        "log_dir_display": logs,
        "job_log": paths.job_log(logs, run.name, "%j"),
        "job_sidecar": paths.job_sidecar(suite_path(logs), run.name, "$SLURM_JOB_ID"),
        "wandb": wandb,
        "slurm": s.slurm,
        "request_gpus": s.slurm.request_gpus,
    }


def _knob_lines() -> list[str]:
    """paths.KNOBS as the lines of the script's `for knob in ...` list: 7 a line, a lone last
    one joining the line before."""
    lines = [list(paths.KNOBS[i:i + 7]) for i in range(0, len(paths.KNOBS), 7)]
    if len(lines) > 1 and len(lines[-1]) == 1:
        last = lines.pop()
        lines[-1] += last
    return [" ".join(line) for line in lines]


def shell_word(text: str) -> str:
    """`text` as one shell word; commas are quoted too, so shellcheck reads arrays right."""
    quoted = shlex.quote(text)
    return f"'{text}'" if quoted == text and "," in text else quoted


def env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def suite_path(path: str) -> str:
    """A path for the script: relative ones are taken from the suite's root ($SUITE_DIR)."""
    if os.path.isabs(path):
        return shell_word(path)
    return '"$SUITE_DIR/' + _dq(path) + '"'


def tokenizer_arg(model: str | None) -> str:
    """A tokenizer path ("./..." is taken from the suite's root) or a Hugging Face name."""
    if not model:
        return '""'
    if model.startswith("./"):
        return suite_path(model[2:])
    return shell_word(model)


def suite_words(words: list[str]) -> str:
    """--data-path words (prefixes and blend weights) as one double-quoted string."""
    out = []
    for word in words:
        word = str(word)
        if _is_number(word) or os.path.isabs(word):
            out.append(_dq(word))
        else:
            out.append("$SUITE_DIR/" + _dq(word))
    return '"' + " ".join(out) + '"'


def _dq(text: str) -> str:
    """Escape text for use inside double quotes in bash."""
    for ch in ("\\", '"', "$", "`"):
        text = text.replace(ch, "\\" + ch)
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

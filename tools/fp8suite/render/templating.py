"""Expanded runs -> launch scripts, through the Jinja2 templates in templates/.

All decisions and all shell quoting happen here; the templates only lay out prepared values
(loops and conditionals, no logic). Output is deterministic: no timestamps, and paths inside
the suite are written relative to it.

One quoting path: every value a template writes is one of three kinds, made only here,
and the template environment refuses anything else (a plain string or number from the
matrix cannot reach a script by mistake):

* `Shell`: shell text, each matrix value in it quoted by `shell_word` (or `_dq` inside a
  double-quoted string); integers are written by `shell_int`;
* `Comment`: text for a `#` comment line: control characters escaped (`\n` as the two
  characters backslash and n), so a comment can never end early and start a command;
* `Directive`: the value of an `#SBATCH` line, checked to hold no whitespace or control
  characters (sbatch, not bash, reads those lines).
"""

from __future__ import annotations

import os
import re
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from ..common import paths
from . import scripts
from ..megatron import recipes
from ..config import reserved
from ..config.checks import NVTE_ATTN
from ..common.errors import UnquotedValue
from ..megatron.flags import load_snapshot, tokens
from ..config.schema import ExpandedRun, Matrix


class Shell(str):
    """Shell text in which every matrix value is quoted."""


class Comment(str):
    """Text safe on a `#` comment line (one line, control characters escaped)."""


class Directive(str):
    """A value safe on an `#SBATCH` line (no whitespace, no control characters)."""


_UNSAFE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_DIRECTIVE = re.compile(r"[^\s\x00-\x1f\x7f-\x9f\u2028\u2029\\\"'`$;|&<>]+")


def comment(text: Any) -> Comment:
    """`text` for a comment line: control characters (newline included) as escapes."""
    return Comment(_UNSAFE_LINE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"),
                                    str(text)))


def directive(text: Any) -> Directive:
    """`text` for an `#SBATCH` line; ValueError when it holds whitespace, quotes or control
    characters (the matrix checks refuse such values first, naming the key)."""
    text = str(text)
    if not _DIRECTIVE.fullmatch(text):
        raise ValueError(f"not a safe #SBATCH value: {text!r}")
    return Directive(text)


def shell_int(value: Any) -> Shell:
    """An integer for the script (never a bool, a float or a string)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnquotedValue(f"expected an integer, got {value!r}")
    return Shell(str(value))


def _finalize(value: Any) -> Any:
    # Every {{ ... }} of a template passes here: only prepared values may be written.
    if isinstance(value, (Shell, Comment, Directive)):
        return value
    raise UnquotedValue(f"template writes an unquoted value {value!r}: prepare it in "
                        "templating.context (shell_word, comment, directive, shell_int)")


@dataclass(frozen=True)
class Rendered:
    """The scripts of one run: one per launcher."""

    run: ExpandedRun
    scripts: dict[str, tuple[str, str]]
    """Launcher name -> (path of its script, relative to the suite's root or absolute outside
    it; the script's text), in launcher-name order."""

    @property
    def script(self) -> str:
        """Path of the launch script every launcher starts (the default launcher's)."""
        return self.scripts[scripts.DEFAULT_LAUNCHER][0]


def environment() -> jinja2.Environment:
    """The Jinja2 environment of templates/: StrictUndefined (a missing value is an error),
    trailing newlines kept, no autoescaping, comments as <%# ... #%>."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(paths.TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        # bash's ${#array[@]} would open a Jinja comment: use a delimiter bash never writes.
        comment_start_string="<%#",
        comment_end_string="#%>",
        finalize=_finalize,
    )


def log_dir(matrix: Matrix, run: ExpandedRun) -> str:
    """The run's log folder as written in the matrix (relative to the suite's root)."""
    return run.settings.log_dir or paths.default_log_dir(matrix.name)


def render_runs(matrix: Matrix, runs: list[ExpandedRun], matrix_file: str, out_dir: Path) -> list[Rendered]:
    """Every launcher's script for every run, as they would be written into out_dir.

    Pure apart from reading the templates and the flag snapshot: nothing is written.
    """
    env = environment()
    every = scripts.kinds()
    out = []
    for run in runs:
        where = {name: paths.display_path(paths.script(out_dir, run.name, kind.suffix))
                 for name, kind in every.items()}
        ctx = context(matrix, run, matrix_file, where[scripts.DEFAULT_LAUNCHER], out_dir)
        out.append(Rendered(run, {
            name: (where[name], env.get_template(kind.template).render(dict(ctx, self_path=comment(where[name]))))
            for name, kind in every.items()}))
    return out


def context(matrix: Matrix, run: ExpandedRun, matrix_file: str, script: str, out_dir: Path) -> dict[str, Any]:
    """Every value the templates write, each prepared for where it goes (see the module doc);
    `script` is the launch script every launcher starts. Each launcher adds `self_path`."""
    s = run.settings
    numerics = recipes.of_flags(run.flags)
    snapshot = load_snapshot(s.target.megatron_core) or {}
    groups = []
    for group, flags in run.groups.items():
        lines = [" ".join(shell_word(t) for t in tokens(flag, value, snapshot.get(flag))[0])
                 for flag, value in flags.items()]
        array = shell_name(f"{group.upper()}_ARGS")
        groups.append({"array": array, "ref": Shell(f'"${{{array}[@]}}"'),
                       "lines": [Shell(ln) for ln in lines if ln]})
    logs = log_dir(matrix, run)
    wandb = None
    if s.wandb is not None:
        wandb = {
            "project": shell_word(s.wandb.project),
            "entity": shell_word(s.wandb.entity) if s.wandb.entity else Shell(""),
            "save_dir": suite_path(s.wandb.save_dir) if s.wandb.save_dir else Shell('"$LOG_DIR/wandb"'),
            # Megatron logs loss curves to W&B through its TensorBoard writer.
            "tensorboard": "--tensorboard-dir" not in run.flags,
            "tensorboard_dir": Shell(f'"{paths.tensorboard_dir(Path("$LOG_DIR"), "$RUN_NAME")}"'),
        }
    slurm = s.slurm
    return {
        "matrix_file": comment(matrix_file),
        "matrix_name": comment(matrix.name),
        "run": shell_word(run.name),
        "run_text": comment(run.name),
        "run_dq": Shell(_dq(run.name)),
        "label": comment(numerics.label + "".join(f"; {k}={v}" for k, v in run.axes.items() if k != "recipe")),
        # A comment line starting "shellcheck" would be read as a shellcheck directive.
        "description": [comment(re.sub(r"^(?i:shellcheck)", r"(\g<0>)", line))
                        for line in textwrap.wrap(matrix.description, 95)],
        "script_arg": shell_word(script),
        "matrix_arg": shell_word(matrix_file),
        "root_from_script": Shell(_dq(os.path.relpath(paths.ROOT, out_dir.resolve()))),
        "knobs": Shell(" \\\n            ".join(_knob_lines())),
        "gpus_per_node": shell_int(s.target.gpus_per_node),
        "nodes": shell_int(s.target.nodes),
        "attention_backend": comment(run.flags.get("--attention-backend", "auto")),
        "unset_env": Shell(" ".join(shell_name(name) for name in NVTE_ATTN if name not in s.env)),
        "env": [(exported_name(name), shell_word(env_value(value))) for name, value in s.env.items()],
        "triton_cache_dir": suite_path(s.triton_cache_dir),
        "min_free_mb": shell_int(int(s.min_free_gb * 1024)),
        "data": {
            "mock": Shell("1" if s.data.mock_data else "0"),
            "data_path": suite_words(s.data.data_path),
            "split": shell_word(s.data.split),
            "tokenizer_type": shell_word(s.data.tokenizer_type),
            "tokenizer_model": tokenizer_arg(s.data.tokenizer_model),
            "vocab_size": shell_int(s.data.vocab_size) if s.data.vocab_size is not None else Shell(""),
        },
        "groups": groups,
        "fusion": s.gradient_accumulation_fusion,
        "log_dir": suite_path(logs),
        "log_dir_display": comment(logs),
        "job_log_text": comment(paths.job_log(logs, run.name, "<jobid>")),
        "output": directive(paths.job_log(logs, run.name, "%j")),
        "job_name": directive(run.name),
        "job_sidecar": Shell(paths.job_sidecar(suite_path(logs), shell_word(run.name), "$SLURM_JOB_ID")),
        "wandb": wandb,
        "checkpoint": {"dir": suite_path(s.checkpoint.dir),
                       "save_interval": shell_int(s.checkpoint.save_interval)} if s.checkpoint else None,
        "signal_seconds": shell_int(SIGNAL_SECONDS),
        "cpus_per_task": shell_int(CPUS_PER_GPU * s.target.gpus_per_node),
        "slurm": {
            "time": directive(slurm.time),
            "partition": directive(slurm.partition) if slurm.partition else None,
            "account": directive(slurm.account) if slurm.account else None,
            "sbatch_options": [extra_sbatch_option(option) for option in slurm.sbatch_options],
            "container_image": shell_word(slurm.container_image) if slurm.container_image else None,
            # Inside the double-quoted --container-mounts="$SUITE_DIR:$SUITE_DIR,...".
            "container_mounts": [Shell(_dq(mount)) for mount in slurm.container_mounts],
        },
        "request_gpus": s.slurm.request_gpus,
    }


SIGNAL_SECONDS = 600
"""Seconds before a Slurm job's --time runs out that its steps get SIGTERM (#SBATCH
--signal=TERM@600, rendered with a checkpoint): time for the iteration under way and
Megatron's save. An 8B model's checkpoint with its Adam state is about 100 GB (16 bytes per
parameter for fp32 master weights and two moments, plus the bf16 weights): 600 s holds it at
200 MB/s, a slow shared file system's rate. Slurm may deliver the signal up to 60 s late."""


CPUS_PER_GPU = 8
"""CPUs the batch scripts ask for per GPU of a node (#SBATCH --cpus-per-task = 8 x
target.gpus_per_node, with request_gpus): a rank's Python process, its data loader workers and
NCCL's threads. H100/H200 nodes of 8 GPUs have 96-224 cores, so 64 fits them; a cluster that
has fewer refuses the job at sbatch, which run.py records with sbatch's reason."""


def _knob_lines() -> list[str]:
    """paths.KNOBS as the lines of the script's `for knob in ...` list: 7 a line, a lone last
    one joining the line before."""
    lines = [list(paths.KNOBS[i:i + 7]) for i in range(0, len(paths.KNOBS), 7)]
    if len(lines) > 1 and len(lines[-1]) == 1:
        last = lines.pop()
        lines[-1] += last
    return [" ".join(line) for line in lines]


def shell_word(text: str) -> Shell:
    """`text` as one shell word, the single quoting path of every matrix value.

    Plain words stay bare; commas are quoted too, so shellcheck reads arrays right. Text
    holding `$`, a backquote, a backslash or a single quote is double-quoted with those
    escaped (`"img\\$(x)"`), which bash reads literally and shellcheck accepts without a
    note; anything else is single-quoted.
    """
    text = str(text)
    quoted = shlex.quote(text)
    if quoted == text:
        return Shell(f"'{text}'" if "," in text else text)
    if any(ch in text for ch in "$`\\'"):
        return Shell('"' + _dq(text) + '"')
    return Shell(quoted)


def shell_name(name: str) -> Shell:
    """A variable name for the script; ValueError unless it is one."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"not a shell variable name: {name!r}")
    return Shell(name)


def extra_sbatch_option(option: str) -> Directive:
    """A slurm.sbatch_options entry for an `#SBATCH` line; ValueError (a bug: the matrix
    loader refuses these) for an option the suite sets itself (fp8suite.config.reserved)."""
    reason = reserved.sbatch_option_problem(option)
    if reason:
        raise ValueError(f"#SBATCH {option} reached the template: {reason}")
    return directive(option)


def exported_name(name: str) -> Shell:
    """A matrix env name for the script's `export NAME=...`; ValueError (a bug: the matrix
    loader refuses these) for a name no launch may take (fp8suite.config.reserved)."""
    reason = reserved.env_name_problem(name)
    if reason:
        raise ValueError(f"env {name} reached the template: {reason}")
    return shell_name(name)


def env_value(value: Any) -> str:
    """A matrix env value as the script exports it: booleans as 1/0, the rest as text."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def suite_path(path: str) -> Shell:
    """A path for the script: relative ones are taken from the suite's root ($SUITE_DIR)."""
    if os.path.isabs(path):
        return shell_word(path)
    return Shell('"$SUITE_DIR/' + _dq(path) + '"')


def tokenizer_arg(model: str | None) -> Shell:
    """A tokenizer path ("./..." is taken from the suite's root) or a Hugging Face name."""
    if not model:
        return Shell('""')
    if model.startswith("./"):
        return suite_path(model[2:])
    return shell_word(model)


def suite_words(words: list[str]) -> Shell:
    """--data-path words (prefixes and blend weights) as one double-quoted string."""
    out = []
    for word in words:
        word = str(word)
        if _is_number(word) or os.path.isabs(word):
            out.append(_dq(word))
        else:
            out.append("$SUITE_DIR/" + _dq(word))
    return Shell('"' + " ".join(out) + '"')


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

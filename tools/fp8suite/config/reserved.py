"""Names and values a launch can never take: one set, used by the matrix loader (limits.py,
matrix.py), `run.py --env` (plan.launch_env) and the templates (templating.py).

Each rule says why, so that every place that refuses a name gives the same reason:

* environment names bash keeps for itself: readonly ones (`UID`, `EUID`, `PPID`,
  `BASH_VERSINFO`, `SHELLOPTS`, `BASHOPTS`: the script dies at its `export`) and the ones it
  sets or reads on its own (`RANDOM`, `BASHPID`, `PWD`, `BASH_ENV`, `PS4`, `IFS`, ...);
* the suite's own names: the queue's attempt token (`FP8SUITE_ATTEMPT`, and the whole
  `FP8SUITE_` prefix), the variables the launch scripts assign themselves (read from the
  templates, e.g. `RUN_NAME`, `ARGS`, `MODEL_ARGS`), `LOG_FILE` / `META_FILE`;
* `$` in an environment value or a path: the scripts and run.py pass values literally
  (`PATH: '/opt/bin:$PATH'` would leave the script without `mkdir`); the suite expands
  nothing a matrix or `--env` gives;
* `#SBATCH` options the batch scripts set themselves (`--output`, `--error`, `--nodes`,
  `--time`, ...; sbatch keeps the last one, so a repeat silently moves the log or changes the
  node count), under any abbreviation sbatch accepts (`--out=` is `--output=`);
* `%` in a log folder: sbatch expands `%u`, `%j`, ... in `#SBATCH --output`, so the log would be
  written somewhere the queue and the report never look;
* run names that read back as another run's attempt, node or job log (`x.1`, `x.node1`,
  `x.812345`: paths.log_name).

Every check returns '' when the name or value is fine, else the reason (one line, no file
or key: the caller adds those).
"""

from __future__ import annotations

import re
from functools import lru_cache

from ..common import paths

BASH_READONLY = ("UID", "EUID", "PPID", "BASH_VERSINFO", "SHELLOPTS", "BASHOPTS")
"""Readonly in bash (bash(1), "Shell Variables"): `export UID=...` ends the script."""

BASH_OWN = (
    "BASH", "BASHPID", "BASH_ALIASES", "BASH_ARGC", "BASH_ARGV", "BASH_ARGV0", "BASH_CMDS",
    "BASH_COMMAND", "BASH_EXECUTION_STRING", "BASH_LINENO", "BASH_REMATCH", "BASH_SOURCE",
    "BASH_SUBSHELL", "BASH_VERSION", "DIRSTACK", "EPOCHREALTIME", "EPOCHSECONDS", "FUNCNAME",
    "GROUPS", "HISTCMD", "LINENO", "OLDPWD", "OPTARG", "OPTIND", "PIPESTATUS", "PWD", "RANDOM",
    "REPLY", "SECONDS", "SRANDOM")
"""Set by bash itself (bash(1), "Shell Variables"): an assignment is lost, ignored or changes
what bash reports."""

BASH_BEHAVIOUR = {
    "IFS": "it changes how the script splits words",
    "BASH_ENV": "bash would run that file before the script",
    "ENV": "sh would run that file",
    "PS4": "bash evaluates it when tracing",
    "PS0": "bash may evaluate it", "PS1": "bash may evaluate it", "PS2": "bash may evaluate it",
    "PS3": "bash may evaluate it",
    "PROMPT_COMMAND": "bash may run it",
    "CDPATH": "it changes where `cd` goes",
    "GLOBIGNORE": "it changes the script's globbing",
    "BASH_XTRACEFD": "it redirects traces",
    "POSIXLY_CORRECT": "it changes how bash runs the script",
    "BASH_COMPAT": "it changes how bash runs the script",
    "EXECIGNORE": "it changes which commands bash finds",
    "FUNCNEST": "it limits the script's functions",
    "TMOUT": "it makes bash's `read` time out",
    "BASH_LOADABLES_PATH": "it changes where bash loads builtins from",
}
"""Variables that change how bash reads or runs the script (bash(1)); SHELLOPTS and BASHOPTS
are readonly too."""

SUITE_PREFIX = "FP8SUITE_"
"""The suite's own tokens (launchers.local.ATTEMPT_VAR = FP8SUITE_ATTEMPT) start with it."""

OWNED = {
    "LOG_FILE": "the queue picks each attempt's log; set LOG_DIR to move the logs",
    "META_FILE": "the sidecar goes beside each attempt's log",
}
"""Launch-script inputs that the queue sets per attempt (never a matrix or --env)."""

MATRIX_ONLY = {
    "SUITE_DIR": "a launch setting (set it when launching)",
    "WANDB_API_KEY": "a secret: it comes from the environment at launch, never from a file",
}
"""Names a matrix may not set but a launch may (with paths.KNOBS, the launch settings)."""

_ASSIGNED = re.compile(r"^\s*(?:export\s+|local\s+|readonly\s+)?([A-Za-z_][A-Za-z0-9_]*)\+?=",
                       re.M)
_GROUP_ARRAY = re.compile(r"[A-Z][A-Z0-9_]*_ARGS")
"""The arrays of Megatron flags, one per group (MODEL_ARGS, TRAINING_ARGS, ...)."""


EXTENDED = frozenset({"PYTHONPATH"})
"""Variables the scripts add to, keeping the caller's value (PYTHONPATH gets Megatron and
tools/te_wgrad in front of it): a matrix or --env may set them."""


@lru_cache(maxsize=None)
def script_variables() -> frozenset[str]:
    """Every variable the launch templates assign themselves (`NAME=`, `export NAME=`,
    `NAME+=` at the start of a line of paths.TEMPLATES/*.j2), minus the launch settings
    they read from the caller (paths.KNOBS, SUITE_DIR) and those they only extend
    (EXTENDED). A matrix or --env exporting one would be overwritten by the script, or
    would overwrite it."""
    names: set[str] = set()
    for template in sorted(paths.TEMPLATES.glob("*.j2")):
        names.update(_ASSIGNED.findall(template.read_text(encoding="utf-8")))
    return frozenset(names - set(paths.KNOBS) - {paths.SUITE_DIR} - EXTENDED)


def env_name_problem(name: str, launch: bool = False) -> str:
    """Why `name` cannot be set in a launch's environment ('' when it can). `launch` is True
    for run.py --env (launch settings such as GPUS_PER_NODE allowed), False for a matrix's
    `env:` (launch settings refused: they belong to the launch)."""
    if name in BASH_READONLY:
        return "readonly in bash: the script would stop at its export"
    if name in BASH_OWN:
        return "bash sets it itself"
    if name in BASH_BEHAVIOUR:
        return f"it changes how bash runs the script ({BASH_BEHAVIOUR[name]})"
    if name.startswith("BASH_FUNC"):
        return "bash would define a function from it"
    if name.startswith(SUITE_PREFIX):
        return f"{SUITE_PREFIX}* names are the suite's own (the queue's attempt token)"
    if name in OWNED:
        return OWNED[name]
    if name in script_variables() or _GROUP_ARRAY.fullmatch(name):
        return "the launch script sets it itself"
    if not launch:
        if name in MATRIX_ONLY:
            return MATRIX_ONLY[name]
        if name in paths.KNOBS:
            return ("a launch setting of the scripts: set it when launching "
                    f"({name}=... bash <run>.sh, or run.py --env {name}=...)")
    return ""


def env_value_problem(value: str) -> str:
    """Why an environment value cannot be passed as it is ('' when it can): a `$`, which
    nothing expands (the scripts export matrix values single-quoted; run.py passes --env
    values in the process environment)."""
    if "$" in value:
        return ("holds '$': the value is passed literally, nothing expands it; write the "
                "full value (e.g. the whole PATH) instead of $VAR")
    return ""


def path_value_problem(value: str) -> str:
    """Why a folder or file setting of a matrix cannot be used ('' when it can): a `$`
    (written into the script literally, never expanded)."""
    if "$" in value:
        return "holds '$': the path is used literally, nothing expands $VAR or ${VAR}; write it out"
    return ""


def log_folder_problem(value: str) -> str:
    """Why a log folder cannot be used ('' when it can): a `%`, which sbatch expands in
    `#SBATCH --output` (%j job id, %u user, %x job name, ...), so the job's log would not be
    where the queue and the report look for it."""
    if "%" in value:
        return ("holds '%': sbatch expands %j, %u, %x ... in #SBATCH --output, so the log "
                "would go elsewhere; write the folder without '%'")
    return path_value_problem(value)


SUITE_SBATCH = ("--job-name", "--nodes", "--ntasks-per-node", "--ntasks", "--gpus-per-node",
                "--time", "--output", "--error", "--input", "--partition", "--account",
                "--array", "--chdir", "--export", "--export-file", "--open-mode", "--parsable",
                "--wrap")
"""sbatch options the batch scripts or run.py set themselves (templates/sbatch.sh.j2's
#SBATCH lines, slurm.partition/account/time, run.py --slurm's `sbatch --parsable`), or that
would move the log (--error, --input, --array, --chdir, --open-mode) or change the job's
environment behind the suite's checks (--export, --export-file: BASH_ENV=...)."""

SETTING_OF = {"--partition": "slurm.partition", "--account": "slurm.account",
              "--time": "slurm.time", "--gpus-per-node": "target.gpus_per_node",
              "--nodes": "target.nodes", "--output": "log_dir", "--error": "log_dir"}
"""The matrix setting that gives an sbatch option the suite sets."""

DEFAULTED_SBATCH = ("--cpus-per-task", "--exclusive")
"""sbatch options the batch scripts write as a default that slurm.sbatch_options may change
(written after them, so sbatch keeps the matrix's): CPUs per task, a whole node."""

CONFLICTS = {"--gpus": "--gpus-per-node"}
"""sbatch options of their own name that contradict one the suite sets."""


def sbatch_option_problem(option: str) -> str:
    """Why one `slurm.sbatch_options` entry ("--name" or "--name=value") cannot be added ('' when
    it can): an option the suite sets itself (SUITE_SBATCH), written whole or abbreviated
    (sbatch's getopt_long takes any unambiguous prefix: `--out` is `--output`)."""
    name = option.split("=", 1)[0]
    if name in CONFLICTS and CONFLICTS[name] != name:
        full = CONFLICTS[name]
        return (f"{name} contradicts #SBATCH {full}, which the suite sets itself; "
                f"set {SETTING_OF[full]} instead")
    hits = [full for full in SUITE_SBATCH if full == name or (len(name) > 2 and full.startswith(name))]
    if not hits:
        return ""
    full = name if name in hits else hits[0]
    instead = f"; set {SETTING_OF[full]} instead" if full in SETTING_OF else ""
    shown = name if name == full else f"{name} (an abbreviation of {full} to sbatch)"
    return f"{shown} is set by the suite itself (sbatch keeps the last one){instead}"


def run_name_problem(name: str) -> str:
    """Why a run name cannot be used ('' when it can): its log `<name>.log` would be read back
    as another run's attempt, node or job log (paths.log_name: "x.1" is attempt 1 of x,
    "x.node1" node 1 of x, "x.812345" job 812345 of x)."""
    run, node, n = paths.log_name(name)
    if (run, node, n) == (name, 0, -1):
        return ""
    what = f"node {node}'s log" if node else "an attempt or job log"
    return (f"run name {name!r} would be read back as {what} of run {run!r} "
            f"(names may not end in .<number> or .node<number>)")

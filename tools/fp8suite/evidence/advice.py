"""Advice from the suite's own measurements: settings that made a run slower, with what they
cost and where that was measured, and settings a committed run crashed with.

The table is data (tools/fp8suite/data/advice.yaml): each entry names a setting, when it
applies to a run (`applies_when`), the advice, and two committed logs of the same model, batch
and layout that differ in that setting (`slower`, `faster`). The figure, the step-time change
`slower / faster - 1` of their median iteration times (metrics.timed_iter_ms, the report's
rule: warm-up, evaluation, checkpoint and profiled iterations left out), and the conditions it
was measured under (GPU, Transformer Engine, megatron-core, apex, data-parallel size: from the
logs' sidecars and argument dumps) are read from those logs, so they cannot go stale.

An entry may instead cite one log that crashed (`crashed`): its line names the failure as the
log states it and the conditions it happened under ("crashed at start-up at DP=1 on H100 (...),
logs/...: RuntimeError: ..."), read from that log and its sidecar the same way.

Advice is never a refusal: render.py and run.py print it ("advice: ... measured +5.2% step
time at DP=2 on H200, logs/..."), the manifest records it per run.
"""

from __future__ import annotations

import functools
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from ..common import paths
from ..common import status as S
from ..megatron import recipes
from ..logs.parse import read_log
from ..megatron.flags import flag_int
from ..config.memory import Flags, flags_from_argv
from ..report.metrics import timed_iter_ms, timed_rows

TABLE = Path(__file__).resolve().parents[1] / "data" / "advice.yaml"
WARMUP = 3
"""Iterations left out of each median after a (re)start: the report's default (report.py --warmup)."""

CONDITIONS = ("flags_on", "flags_off", "flag_values", "quantized", "architecture", "dp_min", "dp_max",
              "tp_min", "nodes_max", "fusion")
"""The keys `applies_when` may hold."""


@dataclass(frozen=True)
class Conditions:
    """What a cited log ran on and with (its sidecar and arguments dump)."""

    gpu: str
    """GPU family the log ran on (recipes.gpu of the sidecar's device name), e.g. "H200"."""
    gpus: int
    dp: int
    """Data-parallel size (Megatron's data_parallel_size)."""
    transformer_engine: str
    megatron_core: str
    apex: Optional[str]
    shape: str
    """The cited run's model and batch from its arguments dump, e.g. "32 layers, hidden 4096, seq
    8192, micro batch 1, global batch 16": a cost measured at one shape may differ at another
    ('' when the dump does not say)."""

    def conditions(self) -> str:
        """e.g. 'at DP=2 on H200 (2 GPUs, 32 layers, hidden 4096, seq 8192, micro batch 1, global
        batch 16; TE 2.20.2, megatron-core 0.19.2, no apex)'."""
        apex = f"apex {self.apex}" if self.apex else "no apex"
        shape = f", {self.shape}" if self.shape else ""
        return (f"at DP={self.dp} on {self.gpu} ({self.gpus} GPU{'s' if self.gpus != 1 else ''}{shape}; "
                f"TE {self.transformer_engine}, megatron-core {self.megatron_core}, {apex})")


@dataclass(frozen=True)
class Measurement(Conditions):
    """What the two cited logs show: the conditions of the slower one and both step times."""

    slower_ms: float
    """Median iteration time of the log with the setting, ms."""
    faster_ms: float
    """Median iteration time of the log with its alternative, ms."""

    @property
    def change(self) -> float:
        """Step-time change of the setting: slower / faster - 1 (0.052 = +5.2%)."""
        return self.slower_ms / self.faster_ms - 1

    def describe(self) -> str:
        """e.g. 'measured +5.2% step time at DP=2 on H200 (2 GPUs, TE 2.20.2, megatron-core 0.19.2, no apex)'."""
        return f"measured {self.change * 100:+.1f}% step time {self.conditions()}"


@dataclass(frozen=True)
class Entry:
    """One row of the advice table."""

    id: str
    setting: str
    applies_when: Mapping[str, Any]
    advice: str
    slower: str = ""
    """Repository-relative path of the log with the setting ("" for a crash entry)."""
    faster: str = ""
    """Repository-relative path of the log with its alternative ("" for a crash entry)."""
    crashed: str = ""
    """Repository-relative path of a log that crashed with the setting ("" for a speed entry)."""

    @property
    def logs(self) -> list[str]:
        """The cited logs."""
        return [self.crashed] if self.crashed else [self.slower, self.faster]

    @property
    def measurement(self) -> Measurement:
        """The cited logs' measurement; OSError when a log or its .meta.json is missing, ValueError
        when a log has no timed iteration (a crash entry has none: ValueError)."""
        if self.crashed:
            raise ValueError(f"{self.id}: a crash entry measures no step time")
        return measure(self.slower, self.faster)

    def measured(self) -> Optional[Measurement]:
        """The measurement, or None when the cited logs cannot be read (a checkout without logs/)."""
        try:
            return self.measurement
        except (OSError, ValueError):
            return None

    def line(self) -> str:
        """The one-line advice: setting, measured cost with its conditions, logs, remedy (for a
        crash entry: the failure as its log states it, with its conditions). Without the cited
        logs it says so instead of giving a figure."""
        if self.crashed:
            try:
                what = crash(self.crashed)
            except OSError:
                what = f"crashed (cited log not found), {self.crashed}"
            except ValueError as err:
                what = f"crashed (the cited log does not show it: {err})"
            return f"{self.setting}: {what}; {' '.join(self.advice.split())}"
        m = self.measured()
        cost = m.describe() if m else "measured cost unavailable (cited logs not found)"
        return f"{self.setting}: {cost}, {self.slower} vs {self.faster}; {' '.join(self.advice.split())}"


@functools.lru_cache(maxsize=None)
def table() -> tuple[Entry, ...]:
    """The advice table; ValueError naming the entry and key when an entry is malformed."""
    data = yaml.safe_load(TABLE.read_text())
    entries = []
    for i, item in enumerate(data or []):
        where = f"{paths.display_path(TABLE)}: [{i}]"
        logs = ("crashed",) if "crashed" in item else ("slower", "faster")
        missing = [k for k in ("id", "setting", "applies_when", "advice", *logs) if k not in item]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        if "crashed" in item and ({"slower", "faster"} & set(item)):
            raise ValueError(f"{where}: cites a crash (crashed) and a measurement (slower/faster); one kind per entry")
        unknown = sorted(set(item["applies_when"]) - set(CONDITIONS))
        if unknown:
            raise ValueError(f"{where}.applies_when: unknown {', '.join(unknown)}; known: {', '.join(CONDITIONS)}")
        entries.append(Entry(item["id"], item["setting"], item["applies_when"], item["advice"],
                             item.get("slower", ""), item.get("faster", ""), item.get("crashed", "")))
    return tuple(entries)


@functools.lru_cache(maxsize=None)
def median_ms(log: str) -> float:
    """Median iteration time (ms) of a committed log (path relative to the repository); ValueError
    when it has no timed iteration."""
    parsed = read_log(paths.suite(log))
    times = timed_iter_ms(parsed.steps, timed_rows(parsed.steps, parsed.args, WARMUP))
    if not times:
        raise ValueError(f"{log}: no timed iterations")
    return statistics.median(times)


@functools.lru_cache(maxsize=None)
def measure(slower: str, faster: str) -> Measurement:
    """The measurement two cited logs make (see Measurement); the conditions are the slower log's."""
    return Measurement(**vars(_conditions(slower)), slower_ms=median_ms(slower),
                       faster_ms=median_ms(faster))


@functools.lru_cache(maxsize=None)
def crash(log: str) -> str:
    """How a cited log crashed, with its conditions: "crashed at start-up at DP=1 on H100 (1 GPU,
    TE 2.20.2, megatron-core 0.19.2, no apex), logs/...: RuntimeError: ..." (the log's own words,
    logs.endstatus); OSError when the log or its sidecar is missing, ValueError when the log did
    not crash."""
    status = read_log(paths.suite(log)).status
    if status.name != S.CRASHED:
        raise ValueError(f"{log}: cited as crashed, but the log is {status.name}")
    m = _conditions(log)
    where = f"{status.name} {status.phase}".strip() if status.phase else status.name
    cause = status.exception or status.reason
    return f"{where} {m.conditions()}, {log}: {cause}"


def _conditions(log: str) -> Conditions:
    """The GPU, layout and software a log ran with."""
    side = _sidecar(log)
    env = side.get("environment") or {}
    device = (env.get("gpu") or {})
    family = recipes.gpu(device.get("name"))
    args = read_log(paths.suite(log)).args
    return Conditions(
        gpu=family.name if family else str(device.get("name")),
        gpus=flag_int(args.get("world_size"), 0) or int(device.get("count") or 0),
        dp=flag_int(args.get("data_parallel_size"), 0) or 0,
        transformer_engine=str(env.get("transformer_engine")), megatron_core=str(env.get("megatron_core")),
        apex=env.get("apex"), shape=_shape(args))


_SHAPE_ARGS = (("num_layers", "{} layers"), ("hidden_size", "hidden {}"), ("seq_length", "seq {}"),
               ("micro_batch_size", "micro batch {}"), ("global_batch_size", "global batch {}"))


def _shape(args: dict) -> str:
    """'4 layers, hidden 4096, seq 4096, micro batch 4, global batch 4' from an arguments dump
    (the parts it has)."""
    return ", ".join(words.format(flag_int(args.get(name), 0)) for name, words in _SHAPE_ARGS
                     if flag_int(args.get(name), 0))


def _sidecar(log: str) -> dict:
    path = paths.suite(log)
    return json.loads(path.with_name(path.name[: -len(".log")] + ".meta.json").read_text())


# --- which advice applies to a run -----------------------------------------------------------

@dataclass(frozen=True)
class Facts:
    """What the conditions look at, for one run as it will launch."""

    flags: Mapping[str, Any]
    gpu: str
    tp: int
    dp: int
    nodes: int
    fusion: str
    """The matrix's gradient_accumulation_fusion (schema.FUSION_MODES)."""


def applies(entry: Entry, facts: Facts) -> bool:
    """Whether every condition of `entry.applies_when` holds for the run."""
    f = Flags(facts.flags)
    when = entry.applies_when
    family = recipes.gpu(facts.gpu)
    checks = [
        all(f.on(flag) for flag in when.get("flags_on", [])),
        not any(f.on(flag) for flag in when.get("flags_off", [])),
        all(str(f.str(flag)) == str(value) for flag, value in (when.get("flag_values") or {}).items()),
        "quantized" not in when or recipes.of_flags(facts.flags).recipe.quantized == bool(when["quantized"]),
        "architecture" not in when or (family is not None and family.architecture == when["architecture"]),
        "dp_min" not in when or facts.dp >= int(when["dp_min"]),
        "dp_max" not in when or facts.dp <= int(when["dp_max"]),
        "tp_min" not in when or facts.tp >= int(when["tp_min"]),
        "nodes_max" not in when or facts.nodes <= int(when["nodes_max"]),
        "fusion" not in when or facts.fusion in [str(v) for v in when["fusion"]],
    ]
    return all(checks)


def for_facts(facts: Facts) -> list[Entry]:
    """The entries of the table that apply to a run."""
    return [e for e in table() if applies(e, facts)]


def for_run(run: Any) -> list[Entry]:
    """Advice for a matrix run (schema.ExpandedRun) as rendered."""
    from ..config.schema import parallel

    par = parallel(run)
    s = run.settings
    return for_facts(Facts(run.flags, s.target.gpu, par.tp, par.dp, s.target.nodes,
                           s.gradient_accumulation_fusion))


def crashes(run: Any) -> bool:
    """Whether a committed log shows a matrix run's settings crash (an entry with `crashed:`
    applies to it as rendered)."""
    return any(entry.crashed for entry in for_run(run))


def for_entry(entry: Mapping[str, Any], extra_args: Optional[list[str]] = None,
              env: Optional[Mapping[str, str]] = None) -> list[Entry]:
    """Advice for a manifest entry launched with Megatron args after `--` and GPUS_PER_NODE /
    NNODES in `env` (run.py): the data-parallel size follows the launch's world size."""
    env = env or {}
    flags = flags_from_argv(entry["megatron_args"])
    flags.update(flags_from_argv(list(extra_args or [])))
    f = Flags(flags)
    nodes = flag_int(env.get("NNODES"), entry["nodes"]) or entry["nodes"]
    world = (flag_int(env.get("GPUS_PER_NODE"), entry["gpus_per_node"]) or entry["gpus_per_node"]) * nodes
    tp = f.int("--tensor-model-parallel-size", 1) or 1
    model = tp * (f.int("--pipeline-model-parallel-size", 1) or 1) * (f.int("--context-parallel-size", 1) or 1)
    return for_facts(Facts(flags, entry["gpu"], tp, max(1, world // model), nodes,
                           entry.get("gradient_accumulation_fusion") or "auto"))


def manifest_records(entries: list[Entry]) -> list[dict[str, Any]]:
    """How the manifest records a run's advice: id, the measured change (rounded to 0.1%; None
    when the cited logs are missing), the logs and the line printed."""
    records = []
    for e in entries:
        m = e.measured()
        records.append({"id": e.id, "step_time_change": round(m.change, 3) if m else None,
                        "logs": e.logs, "text": e.line()})
    return records

"""FP8 speedup predicted before launch, from a cost model calibrated on the committed logs.

A run's step time per GPU (ms) is modelled as a sum of costs, each a feature of the run's shape
and settings times a coefficient fitted to the committed measurements:

  per micro-batch (times the micro-batches each GPU runs per step):
    gemm_bf16_flop, gemm_fp8_flop   linear-layer and output-layer GEMM FLOPs at each precision,
                                    over the GPU's dense peak (recipes.GpuFamily.peak_tflops):
                                    the fitted coefficient is 1 / the measured efficiency
    attention_flop                  causal attention (QK^T, PV) FLOPs over the BF16 peak
    logits                          the loss over tokens x vocabulary (x2 without CE fusion)
    cast_<recipe>                   elements quantized to FP8 (GEMM inputs forward, gradients
                                    backward), one feature per recipe kind (their casts differ)
    fp8_tensors                     tensors quantized (a fixed cost per cast/transpose kernel)
    wgrad_unfused                   weight-gradient accumulation outside the GEMM (no fusion)
    tp_comm                         sequence/tensor-parallel collectives' bytes (TP > 1)
  per step:
    weight_cast, weight_cast_tensors
                                    FP8 weight copies made once per step: elements and tensors
    param_gather, param_gather_tensors
                                    FP8 weights with --fp8-param-gather, over DP: Transformer
                                    Engine's cast_transpose of every weight each step (elements
                                    and a fixed cost per weight tensor)
    optimizer                       parameters the optimizer updates on this GPU
    fixed                           1 (launch and synchronisation costs)

Recomputation adds the recomputed forward (full: 4/3 of the compute). The coefficients are
non-negative least squares (scipy.optimize.nnls) on relative error (GEMM operand bytes and
elementwise traffic were tried as features and left out: they made the leave-one-out error
worse on the committed logs), fitted to every committed
log with an arguments dump, a sidecar and timed iterations (`calibrate`); the result is
tools/fp8suite/data/predictor.json, rebuilt by
`python tools/predict_speedup.py --calibrate logs/ tests/data/real_h200x2/` (the file names its command).
The predicted speedup of an FP8 run is its BF16 twin's predicted step time (the same run with
--bf16 alone) over its own: 1.3 = FP8 30% faster. Not modelled: pipeline bubbles, CUDA graphs,
FP8 attention, communication that overlap does not hide, host (Python) overhead: small
models whose step is bound by the CPU (hidden 2048: FP8 is slower than BF16 there) are
under-costed until logs of such widths calibrate it.
"""

from __future__ import annotations

import functools
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from ..common import paths
from ..megatron import recipes
from ..logs.parse import read_log
from ..megatron.logvocab import arg_value
from ..config.memory import Flags, _linear_params_per_layer, not_modelled, shape
from ..report.metrics import timed_iter_ms, timed_rows

CALIBRATION = Path(__file__).resolve().parents[1] / "data" / "predictor.json"
WARMUP = 3
"""Iterations left out of each median after a (re)start: the report's default."""
FP8_RECIPES = tuple(r.name for r in recipes.quantized() if r.precision == "fp8" and r.te_probe is not None)
"""The FP8 recipes with a cast cost of their own (from the registry: its custom recipe aside)."""

FEATURES = ("gemm_bf16_flop", "gemm_fp8_flop", "attention_flop", "logits", *(f"cast_{r}" for r in FP8_RECIPES), "fp8_tensors", "wgrad_unfused",
            "tp_comm", "weight_cast", "weight_cast_tensors", "param_gather", "param_gather_tensors",
            "optimizer", "fixed")


def flags_from_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """A log's arguments dump as Megatron flags ({"num_layers": "32"} -> {"--num-layers": 32}),
    so that a logged run and a matrix run are read alike; None values are left out."""
    formats = {r.format_arg: r.format_flag for r in recipes.RECIPES if r.format_flag}  # "fp8" -> "--fp8-format"
    out: dict[str, Any] = {}
    for name in args:
        value = arg_value(args, name)
        if value is None or value is False:
            continue
        out[formats.get(name) or "--" + name.replace("_", "-")] = value
    return out


@dataclass(frozen=True)
class CostedRun:
    """What the cost model reads of one run."""

    flags: Mapping[str, Any]
    world_size: int
    vocab_size: int
    gpu: str
    wgrad_fusion: bool
    """Whether weight gradients accumulate inside the GEMM (Megatron's gradient_accumulation_fusion)."""


def features(run: CostedRun) -> dict[str, float]:
    """The cost model's features of one run (per GPU per step; FLOPs over the peak in ms)."""
    f = Flags(run.flags)
    s = shape(f, run.world_size, run.vocab_size)
    n = recipes.of_flags(run.flags)
    kind = n.recipe.name if n.recipe.quantized else "bf16"
    layers = s.layers / s.pp
    start_bf16, end_bf16 = n.layers_bf16 if (n.recipe.quantized and n.first_last_bf16) else (0, 0)
    fp8_layers = max(0.0, layers - start_bf16 - end_bf16) if n.recipe.quantized else 0.0
    bf16_layers = layers - fp8_layers
    tokens = s.seq * s.micro_batch / s.cp
    linear = _linear_params_per_layer(s) / s.tp
    h, kv = s.hidden, s.kv_channels
    q, k = s.heads * kv, s.query_groups * kv
    gate = 2 if s.swiglu else 1
    recompute = f.str("--recompute-granularity")
    redo = 4 / 3 if recompute == "full" else 1.0
    attn_redo = 4 / 3 if recompute in ("full", "selective") else 1.0
    # FLOP per ms at the GPU's dense peak; a GPU without published peaks counts as the default one.
    peak_bf16 = (recipes.peak_tflops(run.gpu, "bf16") or recipes.peak_tflops(recipes.DEFAULT_GPU, "bf16")) * 1e9
    peak_fp8 = (recipes.peak_tflops(run.gpu, "fp8") or recipes.peak_tflops(recipes.DEFAULT_GPU, "fp8")) * 1e9

    # GEMMs of one layer: (rows, inner, cols) forward; backward does two more of the same size.
    gemms = [(tokens, h, (q + 2 * k) / s.tp), (tokens, q / s.tp, h), (tokens, h, gate * s.ffn / s.tp),
             (tokens, s.ffn / s.tp, h)]
    output_flop = 6 * tokens * h * s.vocab / s.tp
    layer_flop = 6 * tokens * linear
    mb = {
        "gemm_bf16_flop": (bf16_layers * layer_flop * redo + output_flop) / peak_bf16,
        "gemm_fp8_flop": fp8_layers * layer_flop * redo / peak_fp8,
        "attention_flop": layers * 3 * 2 * tokens * (s.seq / s.cp) * q / s.tp * attn_redo / peak_bf16,
        "logits": tokens * s.vocab / s.tp * (1 if f.on("--cross-entropy-loss-fusion") else 2) / 1e9,
        "fp8_tensors": fp8_layers * len(gemms) * 3,
        "wgrad_unfused": 0.0 if run.wgrad_fusion else layers * linear / 1e9,
        "tp_comm": (layers * tokens * h * 4 / 1e9) if s.tp > 1 else 0.0,
    }
    # Elements quantized per layer: the four GEMM inputs forward, their output gradients backward.
    quantized = tokens * (h + q / s.tp + h + s.ffn / s.tp + (q + 2 * k) / s.tp + h + gate * s.ffn / s.tp + h)
    for r in FP8_RECIPES:
        mb[f"cast_{r}"] = fp8_layers * quantized * redo / 1e9 if kind == r else 0.0
    per_gpu_params = (layers * linear + s.vocab * h / s.tp * (2 if s.untied else 1) / s.pp)
    fp8_params = fp8_layers * linear
    out = {name: value * s.microbatches for name, value in mb.items()}
    out.update({
        "weight_cast": fp8_params / 1e9 if not n.param_gather else 0.0,
        "weight_cast_tensors": fp8_layers * len(gemms) if not n.param_gather else 0.0,
        "param_gather": fp8_params / s.dp / 1e9 if n.param_gather else 0.0,
        "param_gather_tensors": fp8_layers * len(gemms) / s.dp if n.param_gather else 0.0,
        "optimizer": per_gpu_params / (s.dp * s.cp if f.on("--use-distributed-optimizer") else 1) / 1e9,
        "fixed": 1.0,
    })
    return {name: out[name] for name in FEATURES}


def bf16_twin(flags: Mapping[str, Any]) -> dict[str, Any]:
    """The same run in BF16: every low-precision flag removed, --bf16 kept."""
    low = {flag for r in recipes.RECIPES if r.format_flag for flag in (
        r.format_flag, r.format_flag.replace("-format", "-recipe"), r.format_flag.replace("-format", "-param-gather"))}
    low |= set(recipes.FIRST_LAST_FLAGS) | set(recipes.AMAX_FLAGS) | {recipes.FP8_ATTENTION_FLAG}
    out = {k: v for k, v in flags.items() if k not in low}
    out["--bf16"] = True
    return out


# --- calibration -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Measured:
    """One committed log the model is calibrated on."""

    log: str
    """Repository-relative path."""
    run: CostedRun
    step_ms: float
    """Median iteration time after warm-up (the report's rule)."""

    @property
    def setup(self) -> tuple:
        """Model, batch and layout: runs with the same setup in one folder measure one shape."""
        f = Flags(self.run.flags)
        return (str(Path(self.log).parent), self.run.world_size, *(f.int(x) for x in (
            "--num-layers", "--hidden-size", "--ffn-hidden-size", "--seq-length", "--micro-batch-size",
            "--global-batch-size", "--tensor-model-parallel-size", "--pipeline-model-parallel-size")))

    @property
    def recipe(self) -> str:
        n = recipes.of_flags(self.run.flags)
        return n.recipe.name


def measured_logs(folders: Iterable[Path]) -> list[Measured]:
    """Every log under `folders` (recursively) that `measure` can read, sorted by path."""
    out = []
    for folder in folders:
        for log in sorted(Path(folder).glob("**/*.log")):
            found = measure(log)
            if found is not None:
                out.append(found)
    return out


def measure(log: Path) -> Optional[Measured]:
    """A log with an arguments dump, a vocabulary size (from the dump, else the run's manifest
    entry named by its sidecar) and timed iterations; None otherwise, and for node k > 0 logs
    of a multi-node launch. The GPU comes from the sidecar (the default target GPU without one)."""
    log = Path(log)
    if not log.is_file() or paths.log_name(log.stem)[1] != 0:
        return None  # a dangling link (W&B's run folders hold some), or node k > 0
    try:
        parsed = read_log(log)
    except OSError:
        return None
    args = parsed.args
    times = timed_iter_ms(parsed.steps, timed_rows(parsed.steps, args, WARMUP)) if args else []
    side = log.with_name(log.name[: -len(".log")] + ".meta.json")
    try:
        meta = json.loads(side.read_text()) if side.is_file() else {}
    except (OSError, ValueError):
        meta = {}
    vocab = (arg_value(args, "vocab_size") if args else None) or _manifest_vocab(meta)
    if not times or not isinstance(vocab, int):
        return None
    device = ((meta.get("environment") or {}).get("gpu") or {}).get("name") or recipes.DEFAULT_GPU
    return Measured(paths.display_path(log), CostedRun(
        flags=flags_from_args(args), world_size=arg_value(args, "world_size") or 1, vocab_size=vocab,
        gpu=device, wgrad_fusion=arg_value(args, "gradient_accumulation_fusion") is True),
        statistics.median(times))


def _manifest_vocab(meta: Mapping[str, Any]) -> Optional[int]:
    """The vocabulary size the run's manifest entry records (a tokenizer's vocabulary does not
    reach Megatron's arguments dump); None when the matrix, its manifest or the run is gone."""
    matrix, run = meta.get("matrix"), meta.get("run")
    if not matrix or not run:
        return None
    manifest = paths.manifest(paths.GENERATED, str(matrix))
    try:
        entries = json.loads(manifest.read_text())["runs"]
    except (OSError, ValueError, KeyError):
        return None
    entry = next((e for e in entries if e.get("name") == run), None)
    vocab = ((entry or {}).get("data") or {}).get("vocab_size")
    return vocab if isinstance(vocab, int) else None


@dataclass(frozen=True)
class Model:
    """Fitted coefficients (ms per unit of each feature) and the logs they come from."""

    coefficients: dict[str, float]
    logs: tuple[str, ...]

    def step_ms(self, run: CostedRun) -> float:
        x = features(run)
        return sum(self.coefficients[k] * x[k] for k in FEATURES)

    def speedup(self, run: CostedRun) -> float:
        """Predicted BF16-twin step time / this run's step time."""
        twin = CostedRun(bf16_twin(run.flags), run.world_size, run.vocab_size, run.gpu, run.wgrad_fusion)
        return self.step_ms(twin) / self.step_ms(run)


def fit(data: list[Measured]) -> Model:
    """Non-negative least squares of the step times on relative error (each log weighs alike)."""
    import numpy as np
    from scipy.optimize import nnls

    rows = np.array([[features(m.run)[k] for k in FEATURES] for m in data], dtype=float)
    target = np.array([m.step_ms for m in data], dtype=float)
    scale = rows.max(axis=0)
    scale[scale == 0] = 1.0
    weighted = rows / scale / target[:, None]
    theta, _ = nnls(weighted, np.ones(len(data)))
    coefficients = {k: float(t / s) for k, t, s in zip(FEATURES, theta, scale)}
    return Model(coefficients, tuple(m.log for m in data))


def calibrate(folders: Iterable[Path]) -> Model:
    return fit(measured_logs(folders))


def to_json(model: Model, command: str, span: Mapping[str, Any],
            validation: Optional[Mapping[str, Any]] = None) -> str:
    """The calibration file's text (tools/fp8suite/data/predictor.json); `command` rebuilds it.
    `span` is what the logs cover (`span_of`), `validation` the leave-one-out error of their
    pairs (`validation_of`): every prediction is printed with both."""
    return json.dumps({
        "generated_by": command,
        "unit": "ms per unit of each feature (fp8suite.evidence.predict.FEATURES)",
        "coefficients": {k: float(f"{v:.6g}") for k, v in model.coefficients.items()},
        "logs": list(model.logs),
        "span": dict(span),
        "validation": None if validation is None else dict(validation),
    }, indent=2) + "\n"


def span_of(data: list[Measured]) -> dict[str, Any]:
    """What the calibration logs cover: GPU families and the [min, max] of the shape a
    prediction beyond it extrapolates in (hidden size, layers, GPUs, TP size)."""
    families = sorted({(recipes.gpu(m.run.gpu).name if recipes.gpu(m.run.gpu) else m.run.gpu) for m in data})
    out: dict[str, Any] = {"gpu_families": families}
    for key, value in SHAPE.items():
        values = [value(m.run) for m in data]
        out[key] = [min(values), max(values)] if values else None
    return out


SHAPE = {
    "hidden_size": lambda run: Flags(run.flags).int("--hidden-size"),
    "num_layers": lambda run: Flags(run.flags).int("--num-layers"),
    "gpus": lambda run: run.world_size,
    "tensor_parallel": lambda run: Flags(run.flags).int("--tensor-model-parallel-size", 1) or 1,
}
"""The shape figures the calibrated span is checked on, each read off a CostedRun (tensor
parallelism too: it shrinks each GPU's GEMMs, where FP8's gain lies)."""
SHAPE_WORDS = {"hidden_size": "hidden size {}", "num_layers": "{} layers", "gpus": "{} GPUs",
               "tensor_parallel": "TP {}"}


@dataclass(frozen=True)
class Calibration:
    """The committed calibration: the model, what its logs span, how well it validated."""

    model: Model
    span: Mapping[str, Any]
    validation: Optional[Mapping[str, Any]]


@functools.lru_cache(maxsize=None)
def committed_calibration() -> Optional[Calibration]:
    """The committed calibration, None when the file is missing."""
    if not CALIBRATION.is_file():
        return None
    data = json.loads(CALIBRATION.read_text())
    model = Model({k: float(data["coefficients"].get(k, 0.0)) for k in FEATURES}, tuple(data["logs"]))
    return Calibration(model, data.get("span") or {}, data.get("validation"))


def committed() -> Optional[Model]:
    """The committed model, None when the file is missing."""
    found = committed_calibration()
    return found.model if found else None


# --- leave-one-out validation -------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    """One committed BF16/FP8 pair predicted by a model fitted without its setup's logs."""

    fp8: Measured
    bf16: Measured
    predicted: float
    """Predicted speedup (BF16 / FP8 step time)."""

    @property
    def measured(self) -> float:
        return self.bf16.step_ms / self.fp8.step_ms

    @property
    def error(self) -> float:
        """predicted / measured - 1."""
        return self.predicted / self.measured - 1


def pairs(data: list[Measured]) -> list[tuple[Measured, Measured]]:
    """Each FP8 log with the BF16 log of the same folder and setup whose flags differ least, the
    one of the same --seed among equals."""
    out = []
    for fp8 in data:
        if fp8.recipe == "bf16" or not recipes.of_flags(fp8.run.flags).recipe.quantized:
            continue
        twin = bf16_twin(fp8.run.flags)
        candidates = [b for b in data if b.recipe == "bf16" and b.setup == fp8.setup]
        if candidates:
            seed = str(fp8.run.flags.get("--seed"))
            out.append((fp8, min(candidates, key=lambda b: (
                _difference(twin, b.run.flags), str(b.run.flags.get("--seed")) != seed, b.log))))
    return out


def _difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> int:
    ignore = {"--seed", "--tensorboard-dir", "--save", "--load", "--wandb-exp-name", "--data-path",
              "--exit-duration-in-mins", "--train-iters", "--profile", "--use-pytorch-profiler"}
    keys = (set(a) | set(b)) - ignore
    return sum(str(a.get(k)) != str(b.get(k)) for k in keys if not k.startswith("--profile"))


def leave_one_out(data: list[Measured], pool: Optional[list[Measured]] = None) -> list[Check]:
    """Every pair of `data` predicted by a model fitted on the other setups' logs of `pool`
    (default `data`; the pair's own setup, every log of that folder and shape, left out).
    ValueError when nothing is left to fit on."""
    pool = data if pool is None else pool
    checks = []
    for fp8, bf16 in pairs(data):
        rest = [m for m in pool if m.setup != fp8.setup]
        if not rest:
            raise ValueError(f"{fp8.log}: no log of another setup to fit the model on")
        checks.append(Check(fp8, bf16, fit(rest).speedup(fp8.run)))
    return checks


def calibration_logs() -> list[Measured]:
    """The logs the committed calibration was fitted on, as they read now (missing ones left out)."""
    model = committed()
    found = [measure(paths.suite(log)) for log in (model.logs if model else ())]
    return [m for m in found if m is not None]


def table(checks: list[Check]) -> str:
    """The error table as Markdown."""
    lines = ["| FP8 log | BF16 log | measured speedup | predicted | error |", "|---|---|---:|---:|---:|"]
    for c in checks:
        lines.append(f"| {c.fp8.log} | {Path(c.bf16.log).name} | {c.measured:.3f} | {c.predicted:.3f} | "
                     f"{c.error * 100:+.1f}% |")
    summary = summary_line(validation_of(checks, ""))
    return "\n".join(lines) + "\n\n" + summary + "\n"


BAND_QUANTILE = 0.9
"""The share of the committed pairs a prediction's band covers: the band is the leave-one-out
|error| that this share of pairs stays within (nearest rank)."""
TARGET = 0.10
"""The error the predictor aims at (predict_speedup.py --target's default)."""


def validation_of(checks: list[Check], command: str) -> dict[str, Any]:
    """The figures of a leave-one-out validation that predictor.json stores and every
    prediction quotes: pairs, within the target, median / 90th-percentile / worst |error|
    (shares) and the range of measured speedups."""
    errors = sorted(abs(c.error) for c in checks)
    measured = [c.measured for c in checks]
    if not errors:
        return {"generated_by": command, "pairs": 0}
    rank = max(1, math.ceil(BAND_QUANTILE * len(errors)))
    return {
        "generated_by": command,
        "pairs": len(errors),
        "within_target": sum(e <= TARGET for e in errors),
        "target": TARGET,
        "median_abs_error": round(statistics.median(errors), 4),
        "band_quantile": BAND_QUANTILE,
        "band_abs_error": round(errors[rank - 1], 4),
        "worst_abs_error": round(errors[-1], 4),
        "measured_speedup": [round(min(measured), 3), round(max(measured), 3)],
    }


def summary_line(validation: Mapping[str, Any]) -> str:
    """The one-line summary of a validation (the last line of docs/results/predictor.md)."""
    if not validation.get("pairs"):
        return "no pairs"
    return (f"{validation['pairs']} pairs; within {validation['target']:.0%}: {validation['within_target']}; "
            f"median |error| {validation['median_abs_error'] * 100:.1f}%; "
            f"{validation['band_quantile']:.0%} within ±{validation['band_abs_error'] * 100:.1f}%; "
            f"worst {validation['worst_abs_error'] * 100:.1f}%; "
            f"measured speedups {validation['measured_speedup'][0]:.2f}–{validation['measured_speedup'][1]:.2f}x")


# --- matrix runs ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prediction:
    """A matrix run's predicted speedup with its uncertainty and where it extrapolates."""

    speedup: float
    """BF16-twin step time / this run's, rounded to 0.01."""
    band: Optional[float]
    """± share: the validation's |error| that BAND_QUANTILE of the committed pairs stay within
    (None without a stored validation)."""
    pairs: int
    worst: Optional[float]
    extrapolated: tuple[str, ...]
    """Why the prediction lies outside what the calibration measured; empty inside it."""
    logs: int
    gpus: tuple[str, ...]

    def text(self) -> str:
        """"1.62x ±8.3% (...); extrapolated: no H100 log, above the largest measured 1.40x"."""
        if self.band is None:
            out = f"{self.speedup:.2f}x (uncertainty unknown: predictor.json has no validation)"
        else:
            out = (f"{self.speedup:.2f}x ±{self.band * 100:.1f}% ({BAND_QUANTILE:.0%} of the {self.pairs} "
                   f"committed pairs predicted leave-one-out are within it, the worst off by "
                   f"{self.worst * 100:.1f}%; calibrated on {self.logs} {'/'.join(self.gpus)} logs)")
        if self.extrapolated:
            out += "; extrapolated: " + ", ".join(self.extrapolated)
        return out

    def manifest(self) -> dict[str, Any]:
        """The manifest's keys: predicted_speedup and its siblings."""
        return {"predicted_speedup": self.speedup, "predicted_speedup_band": self.band,
                "predicted_speedup_extrapolated": list(self.extrapolated)}


NO_PREDICTION = {"predicted_speedup": None, "predicted_speedup_band": None, "predicted_speedup_extrapolated": []}
"""The manifest's keys of a run without a prediction."""


def extrapolation(run: CostedRun, speedup: float, span: Mapping[str, Any],
                  validation: Optional[Mapping[str, Any]]) -> tuple[str, ...]:
    """Why a prediction extrapolates: a GPU family without a calibration log, a speedup outside
    the measured ones, a shape outside the calibrated span, a model feature the cost model does
    not model (memory.NOT_MODELLED: mixture-of-experts layers, ...)."""
    out = [f"{what} not modelled" for what in not_modelled(run.flags)]
    family = recipes.gpu(run.gpu)
    name = family.name if family else run.gpu
    if span.get("gpu_families") is not None and name not in span["gpu_families"]:
        out.append(f"no {name} log")
    low, high = (validation or {}).get("measured_speedup") or (None, None)
    if high is not None and speedup > high:
        out.append(f"above the largest measured {high:.2f}x")
    elif low is not None and speedup < low:
        out.append(f"below the smallest measured {low:.2f}x")
    for key, read in SHAPE.items():
        bounds = span.get(key)
        value = read(run)
        if bounds and value is not None and not bounds[0] <= value <= bounds[1]:
            what = SHAPE_WORDS[key].format(value)
            side = "above" if value > bounds[1] else "below"
            out.append(f"{what} {side} the calibrated {bounds[0]}–{bounds[1]}")
    return tuple(out)


def predict_run(run: Any) -> Optional[Prediction]:
    """The prediction for a matrix run (schema.ExpandedRun) over its BF16 twin; None for a BF16
    run, without a vocabulary size or calibration, or an incomplete shape."""
    s = run.settings
    if not recipes.of_flags(run.flags).recipe.quantized or not s.data.vocab_size:
        return None
    found = committed_calibration()
    if found is None:
        return None
    fusion = s.gradient_accumulation_fusion in ("te", "on")
    costed = CostedRun(run.flags, s.target.gpus_per_node * s.target.nodes, s.data.vocab_size, s.target.gpu, fusion)
    try:
        value = found.model.speedup(costed)
    except (ValueError, ZeroDivisionError):
        return None
    if not math.isfinite(value):
        return None
    v = found.validation or {}
    return Prediction(round(value, 2), v.get("band_abs_error"), v.get("pairs", 0), v.get("worst_abs_error"),
                      extrapolation(costed, value, found.span, found.validation), len(found.model.logs),
                      tuple(found.span.get("gpu_families") or ()))

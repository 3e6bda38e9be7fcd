"""The recipe registry (fp8suite.megatron.recipes): one home for the numeric recipe.

Every recipe reads the same from matrix flags and from a log's arguments dump, renders with
one label and one short name, and is accepted or refused for every target GPU by its own
requirements; no other module of the library restates what the registry knows.
"""

import ast
import itertools
import json

import pytest

from conftest import REPO
from fp8suite.launch import environment
from fp8suite.report import metrics
from fp8suite.megatron import recipes
from fp8suite.report import reference

from helpers import CS, broken, run_render

QUANTIZED = recipes.quantized()
RECIPE_IDS = [r.name for r in recipes.RECIPES]


def flags_of(recipe, fmt=None, first_last=None, param_gather=False):
    """Matrix flags that select `recipe` (with the run's modifiers)."""
    base = recipes.BASELINE if recipe.quantized else recipe
    flags = {base.base_flag: True} if base.base_flag else {}
    if recipe.quantized:
        flags[recipe.format_flag] = fmt or recipes.FORMATS[recipe.format_flag][0]
        flags[recipe.recipe_flag] = recipe.recipe_value
        if first_last:
            flags["--first-last-layers-bf16"] = True
            flags["--num-layers-at-start-in-bf16"], flags["--num-layers-at-end-in-bf16"] = first_last
        if param_gather:
            flags[recipe.param_gather_flag] = True
    return flags


def dump_of(flags):
    """The same settings as Megatron's arguments dump prints them (every argument, as text)."""
    every = {"--bf16", "--fp16", *recipes.FORMAT_FLAGS, *recipes.FIRST_LAST_FLAGS,
             *(f.replace("-format", "-recipe") for f in recipes.FORMAT_FLAGS),
             *(f.replace("-format", "-param-gather") for f in recipes.FORMAT_FLAGS)}
    defaults = {"--num-layers-at-start-in-bf16": 1, "--num-layers-at-end-in-bf16": 1,
                **{f.replace("-format", "-recipe"): recipes.DEFAULT_RECIPE[f] for f in recipes.FORMAT_FLAGS}}
    out = {}
    for flag in every:
        value = flags.get(flag, defaults.get(flag, False if flag not in recipes.FORMAT_FLAGS else None))
        out[recipes._dest(flag)] = str(value)
    return out


CASES = [(r, fmt, fl, pg) for r in recipes.RECIPES
         for fmt in (recipes.FORMATS.get(r.format_flag, (None,)) if r.quantized else (None,))
         for fl in ((None, (1, 1), (2, 0)) if r.quantized else (None,))
         for pg in ((False, True) if r.quantized else (False,))]


@pytest.mark.parametrize("recipe,fmt,first_last,param_gather", CASES,
                         ids=[f"{r.name}-{f}-{fl}-{pg}" for r, f, fl, pg in CASES])
def test_flags_and_arguments_dump_give_the_same_numerics(recipe, fmt, first_last, param_gather):
    flags = flags_of(recipe, fmt, first_last, param_gather)
    from_flags = recipes.of_flags(flags)
    from_args = recipes.of_args(dump_of(flags))
    assert from_flags.recipe is recipe and from_flags.known
    assert from_flags == from_args
    # The report's label and precision come from the same place.
    assert metrics.recipe_label(dump_of(flags)) == from_flags.label
    assert metrics.precision(dump_of(flags)) == recipe.precision


def test_labels_and_short_names_name_one_recipe_each():
    numerics = [recipes.of_flags(flags_of(r, f, fl, pg)) for r, f, fl, pg in CASES]
    by_label, by_short = {}, {}
    for n in numerics:
        key = (n.recipe.name, n.fmt, n.first_last_bf16 and n.layers_bf16, n.param_gather)
        assert by_label.setdefault(n.label, key) == key, n.label
        assert by_short.setdefault((n.short, n.fmt, n.param_gather), key) == key, n.short
    assert [recipes.of_flags(flags_of(r)).label for r in recipes.RECIPES] == [
        "BF16", "FP16", "FP32", "FP8 delayed (e4m3)", "FP8 tensorwise (e4m3)", "FP8 blockwise (e4m3)",
        "MXFP8 (e4m3)", "FP8 custom (e4m3)", "FP4 NVFP4 (e2m1)", "FP4 custom (e2m1)"]


def test_an_unknown_recipe_in_a_log_stays_readable():
    n = recipes.of_args({"bf16": "True", "fp8": "hybrid", "fp8_recipe": "future"})
    assert (n.known, n.label, n.precision) == (False, "FP8 future (hybrid)", "fp8")
    assert recipes.of_args({}) is None and metrics.recipe_label({}) == "unknown (no arguments dump)"


@pytest.mark.parametrize("args, idle", [
    ({"fp8": "hybrid", "fp8_recipe": "tensorwise"},
     {"num_layers_at_start_in_bf16", "num_layers_at_end_in_bf16", "fp8_amax_history_len",
      "fp8_amax_compute_algo"}),
    ({"fp8": "hybrid", "fp8_recipe": "tensorwise", "first_last_layers_bf16": "True"},
     {"fp8_amax_history_len", "fp8_amax_compute_algo"}),
    ({"fp8": "hybrid", "fp8_recipe": "delayed"},
     {"num_layers_at_start_in_bf16", "num_layers_at_end_in_bf16"}),
    ({"fp8": "hybrid", "fp8_recipe": "blockwise", "first_last_layers_bf16": "True"},
     {"fp8_amax_history_len", "fp8_amax_compute_algo", "fp8_dot_product_attention"}),
    ({"bf16": "True"},
     {"num_layers_at_start_in_bf16", "num_layers_at_end_in_bf16", "fp8_amax_history_len",
      "fp8_amax_compute_algo", "fp8_dot_product_attention", "fp8_recipe", "fp4_recipe"}),
    ({}, set()),
])
def test_idle_args_are_those_the_other_settings_leave_without_effect(args, idle):
    assert recipes.idle_args(args) == idle


def test_base_precisions_from_flags():
    assert recipes.of_flags({}).recipe.name == "fp32"
    assert recipes.of_flags({"--fp16": True}).label == "FP16"
    assert recipes.of_flags({"--bf16": True}).baseline
    assert not recipes.of_flags({"--bf16": True, "--fp8-format": "hybrid"}).baseline


# --- render: every recipe on every target GPU -------------------------------------------


def matrix_for(recipe, gpu, te="2.20", cuda="13.0"):
    m = broken(**{"target/gpu": gpu, "target/transformer_engine": te, "target/cuda": cuda})
    m["axes"]["recipe"]["cs"] = {"megatron": {"precision": {
        k: v for k, v in flags_of(recipe).items() if k not in ("--bf16",)}}}
    if not recipe.quantized:
        m["megatron"]["precision"] = flags_of(recipe)
    if recipe.recipe_value == "custom":  # Megatron asks a custom recipe for its quantizer factory
        factory = recipe.format_flag.replace("-format", "-quantizer-factory")
        m["axes"]["recipe"]["cs"]["megatron"]["precision"][factory] = "my.factory"
    return m


GPU_CASES = list(itertools.product(QUANTIZED, recipes.TARGET_GPUS))


@pytest.mark.parametrize("recipe,gpu", GPU_CASES, ids=[f"{r.name}-{g}" for r, g in GPU_CASES])
def test_every_recipe_is_accepted_or_refused_by_compute_capability(recipe, gpu, tmp_path, capsys):
    code, lines, out = run_render(tmp_path, capsys, matrix_for(recipe, gpu))
    family = recipes.gpu(gpu)
    if family.compute_capability >= recipe.min_compute_capability:
        # A GPU of unknown memory (GH200: 96 or 144 GB) is rendered with a memory warning only.
        unchecked = [x for x in lines if x.endswith(f"not checked: no memory capacity known for {gpu}")]
        assert bool(unchecked) == (family.memory_gib is None)
        assert (code, [x for x in lines if x not in unchecked]) == (0, [])
        data = json.loads((out / "m.manifest.json").read_text())
        entry = next(r for r in data["runs"] if r["name"] == "r_cs")
        n = recipes.of_flags(flags_of(recipe))
        assert (entry["label"], entry["recipe"], entry["format"]) == (n.label, n.short, n.fmt)
        assert f": {n.label}\n" in (out / "r_cs.sh").read_text().split("\n", 4)[3] + "\n"
    else:
        assert code == 2 and not out.exists()
        assert lines == [f"axes.recipe.cs.megatron.precision.{recipe.recipe_flag}: run r_cs: {recipe.title} "
                         f"needs a Blackwell GPU (B200, B300, GB200, GB300); target.gpu is {gpu}"]


@pytest.mark.parametrize("recipe", [r for r in QUANTIZED if r.min_transformer_engine or r.min_cuda],
                         ids=lambda r: r.name)
def test_old_transformer_engine_or_cuda_is_one_line_each(recipe, tmp_path, capsys):
    code, lines, _ = run_render(tmp_path, capsys, matrix_for(recipe, "B200", te="1.0", cuda="11.0"))
    te = ".".join(map(str, recipe.min_transformer_engine))
    cuda = ".".join(map(str, recipe.min_cuda))
    assert code == 2
    assert lines == [f"target.transformer_engine: run r_cs: {recipe.title} needs Transformer Engine >= {te}; "
                     "target has 1.0",
                     f"target.cuda: run r_cs: {recipe.title} needs CUDA >= {cuda}; target has 11.0"]


def test_nvfp4_renders_for_blackwell_labelled_fp4(tmp_path, capsys):
    m = broken(**{"target/gpu": "B200"})
    m["axes"]["recipe"]["nvfp4"] = {"megatron": {"precision": {"--fp4-format": "e2m1", "--fp4-recipe": "nvfp4"}}}
    code, lines, out = run_render(tmp_path, capsys, m)
    assert (code, lines) == (0, [])
    script = (out / "r_nvfp4.sh").read_text()
    assert script.split("\n", 4)[3].endswith(": FP4 NVFP4 (e2m1)")
    entry = next(r for r in json.loads((out / "m.manifest.json").read_text())["runs"] if r["name"] == "r_nvfp4")
    assert (entry["label"], entry["recipe"]) == ("FP4 NVFP4 (e2m1)", "nvfp4")


def test_fp8_and_fp4_together_is_refused(tmp_path, capsys):
    code, lines, _ = run_render(tmp_path, capsys, broken(**{"target/gpu": "B200", f"{CS}/--fp4-format": "e2m1"}))
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("axes.recipe.cs.megatron.precision.--fp4-format: run r_cs: ")
    assert lines[0].endswith("--fp4-format and --fp8-format cannot be used simultaneously. Please choose one of them.")


def test_fp4_flags_without_fp4_format(tmp_path, capsys):
    code, lines, _ = run_render(tmp_path, capsys, broken(**{"megatron/precision/--fp4-param-gather": True}))
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("megatron.precision.--fp4-param-gather: runs r_bf16, r_cs: ")
    assert lines[0].endswith("--fp4-param-gather must be used together with --fp4-format.")


# --- the report side ----------------------------------------------------------------------


@pytest.mark.parametrize("name,precision,peak", [
    ("NVIDIA H100 80GB HBM3", "bf16", 989.0), ("NVIDIA H100 80GB HBM3", "fp8", 1979.0),
    ("NVIDIA H100 PCIe", "fp8", 1513.0), ("NVIDIA H100 NVL", "bf16", 835.0),
    ("NVIDIA H200", "fp8", 1979.0), ("H200", "bf16", 989.0), ("NVIDIA H200 NVL", "fp8", 1671.0),
    ("NVIDIA GH200 480GB", "bf16", 989.0), ("NVIDIA H20", "bf16", None), ("NVIDIA H800", "fp8", None),
    ("NVIDIA B200", "fp4", 9000.0), ("B200", "bf16", 2250.0), ("NVIDIA GB200", "fp8", 5000.0),
    ("NVIDIA H100 80GB HBM3", "fp4", None), ("NVIDIA A100-SXM4-80GB", "bf16", None), (None, "bf16", None),
    ("H200", None, None),
])
def test_peak_tflops_by_device_or_target_name(name, precision, peak):
    assert recipes.peak_tflops(name, precision) == peak
    assert metrics.peak_tflops(name, precision) == peak


def test_gpu_families_are_complete():
    for family in recipes.GPUS:
        assert family.compute_capability >= (9, 0)
        assert family.memory_gib is None or 60 < family.memory_gib < 300
        assert set(family.peak_tflops) <= set(recipes.PRECISIONS)
        # The family's own name finds it, from a target and from a device name.
        assert recipes.gpu(family.name) is family and recipes.gpu(f"NVIDIA {family.name}") is family
    assert recipes.memory_gib("NVIDIA H200") == pytest.approx(143771 / 1024)  # logs/*/*.meta.json
    assert recipes.memory_gib("nope") is None
    assert recipes.peaks_text(["NVIDIA H200", "H200", "x"]) == "H200: 989 TFLOP/s BF16, 1979 FP8"
    assert recipes.peaks_text(["NVIDIA B200"]) == "B200: 2250 TFLOP/s BF16, 4500 FP8, 9000 FP4"


def test_reference_rows_accept_every_precision():
    assert reference.PRECISIONS == recipes.PRECISIONS
    assert environment.RECIPES == tuple(r.name for r in recipes.probed())
    assert "nvfp4" in environment.RECIPES


def test_a_bf16_run_that_is_not_plain_bf16_is_no_baseline(tmp_path):
    from helpers import write_log, groups_of
    args = {"seq_length": 2048, "world_size": 2, "data_parallel_size": 2, "micro_batch_size": 8}
    write_log(tmp_path / "nvfp4.log", [3.0] * 6, [1000] * 6, args=args)
    # The trimmed fixture's dump predates FP4: add Megatron 0.19's fp4 lines after fp8's.
    text = (tmp_path / "nvfp4.log").read_text()
    fp8 = text.index("  fp8 .")
    fp4 = "".join(f"  {k} {'.' * (48 - len(k))} {v}\n" for k, v in (("fp4", "e2m1"), ("fp4_recipe", "nvfp4")))
    (tmp_path / "nvfp4.log").write_text(text[:fp8] + fp4 + text[fp8:])
    write_log(tmp_path / "mx.log", [3.0] * 6, [1000] * 6, args={**args, "fp8": "e4m3", "fp8_recipe": "mxfp8"})
    (g,) = groups_of(tmp_path)
    assert g.baseline is None
    assert g.summaries["nvfp4"].label == "FP4 NVFP4 (e2m1)" and g.summaries["nvfp4"].precision == "fp4"
    write_log(tmp_path / "plain.log", [3.0] * 6, [1000] * 6, args=args)
    (g,) = groups_of(tmp_path)
    assert g.baseline == "plain"


# --- one home: no other module restates the registry ----------------------------------------


def _vocabulary():
    words = set()
    for r in recipes.quantized():
        if r.recipe_value != "custom":
            words.add(r.recipe_value)
        words |= {r.format_flag, r.recipe_flag, r.param_gather_flag, r.label}
        # Their dests but the bare format names ("fp8", "fp4"), which also name dtypes.
        words |= {recipes._dest(f) for f in (r.recipe_flag, r.param_gather_flag)}
    words |= set(recipes.AMAX_FLAGS) | {recipes._dest(f) for f in recipes.AMAX_FLAGS}
    words |= {g.name for g in recipes.GPUS}
    return words


def _numbers():
    return {v for g in recipes.GPUS for v in g.peak_tflops.values()}


def _literals(path):
    """String and number constants of a module, its docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    # A docstring under a dataclass field is a bare string expression too.
    docstrings |= {id(node.value) for node in ast.walk(tree)
                   if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in docstrings:
            yield node.lineno, node.value


# config/rules.py ports Megatron's own assertions and quotes their conditions and messages
# verbatim (flag names included): it is a copy of Megatron's vocabulary, not the suite's.
LIBRARY = sorted(p for p in (REPO / "tools" / "fp8suite").rglob("*.py")
                 if p.relative_to(REPO / "tools" / "fp8suite").as_posix() not in ("megatron/recipes.py", "config/rules.py"))


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_but_the_registry_knows_recipes_or_gpus(path):
    words, numbers = _vocabulary(), _numbers()
    found = []
    for line, value in _literals(path):
        if isinstance(value, str):
            hits = [w for w in words if w == value or (len(w) > 4 and w in value.split())]
            hits += [w for w in words if w.startswith("--") and w in value]
            if hits:
                found.append(f"{path.name}:{line}: {value!r} names {sorted(set(hits))}")
        elif isinstance(value, float) and value in numbers:
            found.append(f"{path.name}:{line}: {value} is a peak TFLOP/s figure")
    assert not found, "recipe/GPU knowledge outside fp8suite/megatron/recipes.py:\n" + "\n".join(found)


def test_templates_name_no_recipe():
    words = _vocabulary()
    for path in (REPO / "templates").glob("*.j2"):
        text = path.read_text()
        assert not [w for w in words if w.startswith("--") and w in text], path


def test_a_new_recipe_needs_only_the_registry(tmp_path, capsys, monkeypatch):
    """A recipe added to RECIPES alone renders, is checked, labels reports and picks baselines."""
    new = recipes.Recipe("fancy", "FP8 fancy", "fancy FP8", "fp8", "--fp8-format", "fp8", "custom",
                         min_compute_capability=(10, 0), min_transformer_engine=(2, 9), min_cuda=(13, 0))
    registry = tuple(r for r in recipes.RECIPES if r.name != "fp8_custom") + (new,)
    monkeypatch.setattr(recipes, "RECIPES", registry)
    # Rendered, labelled and refused for Hopper by its own data.
    ok = matrix_for(new, "B200")
    code, lines, out = run_render(tmp_path, capsys, ok)
    assert (code, lines) == (0, [])
    entry = next(r for r in json.loads((out / "m.manifest.json").read_text())["runs"] if r["name"] == "r_cs")
    assert (entry["label"], entry["recipe"]) == ("FP8 fancy (e4m3)", "fancy")
    (tmp_path / "hopper").mkdir()
    code, lines, _ = run_render(tmp_path / "hopper", capsys, matrix_for(new, "H100", te="2.8"))
    assert code == 2 and [line.split(": ", 2)[2] for line in lines] == [
        "fancy FP8 needs a Blackwell GPU (B200, B300, GB200, GB300); target.gpu is H100",
        "fancy FP8 needs Transformer Engine >= 2.9; target has 2.8"]
    # The report side reads it too.
    args = {"bf16": "True", "fp8": "e4m3", "fp8_recipe": "custom"}
    assert metrics.recipe_label(args) == "FP8 fancy (e4m3)" and metrics.precision(args) == "fp8"

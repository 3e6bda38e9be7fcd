"""--fp8-dot-product-attention: a suite flag (megatron-core 0.19 has the TransformerConfig field
but no flag), checked at render time against what Transformer Engine 2.20 can run."""

import argparse
import json

import pytest

import report
from conftest import REPO
from fp8suite.report import compare
from fp8suite.logs import parse as logparse
from fp8suite.report import metrics
from fp8suite.megatron import recipes
from fp8suite.megatron.flags import SUITE_FLAGS, add_suite_flags, load_snapshot
from helpers import CS, broken, run_render

FLAG = recipes.FP8_ATTENTION_FLAG
ENV = recipes.DPA_RECIPE_ENV


def with_attention(recipe="tensorwise", gpu="H200", env=None, **changes):
    m = broken(**{"target/gpu": gpu, f"{CS}/--fp8-recipe": recipe, f"{CS}/{FLAG}": True, **changes})
    if env is not None:
        m["axes"]["recipe"]["cs"]["env"] = {ENV: env}
    return m


def test_tensorwise_on_hopper_needs_delayed_scaling_attention(tmp_path, capsys):
    code, lines, out = run_render(tmp_path, capsys, with_attention())
    assert code == 2 and not out.exists()
    assert lines == [
        f"axes.recipe.cs.megatron.precision.{FLAG}: run r_cs: Transformer Engine has tensorwise FP8 attention "
        "only from compute capability 10.0 (H200 is 9.0) and would find no attention backend; set env "
        f"{ENV}: DelayedScaling (FP8 attention in delayed scaling, the linear layers stay tensorwise FP8)"]


@pytest.mark.parametrize("recipe,gpu,env", [
    ("tensorwise", "H200", "DelayedScaling"),
    ("delayed", "H100", None),
    ("delayed", "H200", "DelayedScaling"),  # the same recipe: TE changes nothing
    ("tensorwise", "B200", None),
])
def test_renders_where_transformer_engine_runs_fp8_attention(recipe, gpu, env, tmp_path, capsys):
    code, lines, out = run_render(tmp_path, capsys, with_attention(recipe, gpu, env))
    assert (code, lines) == (0, [])
    script = (out / "r_cs.sh").read_text()
    assert f"  {FLAG}\n" in script
    assert (f"export {ENV}=DelayedScaling\n" in script) == (env is not None)
    assert FLAG not in (out / "r_bf16.sh").read_text()
    entry = next(r for r in json.loads((out / "m.manifest.json").read_text())["runs"] if r["name"] == "r_cs")
    assert entry["label"].endswith(" +FP8 attention (hybrid)")


@pytest.mark.parametrize("recipe,gpu,env,message", [
    ("blockwise", "H200", None,
     f"Megatron does not pass fp8_dpa to Transformer Engine's blockwise FP8 recipe: {FLAG} would change "
     "nothing; remove it"),
    ("delayed", "H200", "Float8CurrentScaling",
     "Transformer Engine has tensorwise FP8 attention only from compute capability 10.0 (H200 is 9.0) and "
     f"would find no attention backend; set env {ENV}: DelayedScaling (FP8 attention in delayed scaling, "
     "the linear layers stay delayed FP8)"),
    ("tensorwise", "H200", "F16", f"{ENV}=F16 keeps attention in 16 bits: {FLAG} would change nothing"),
    ("tensorwise", "H200", "Delayed", f"{ENV}='Delayed' is not one of: DelayedScaling, Float8CurrentScaling, "
     "MXFP8BlockScaling, F16"),
    ("tensorwise", "H200", "delayedscaling", f"{ENV}='delayedscaling' is not one of: DelayedScaling, "
     "Float8CurrentScaling, MXFP8BlockScaling, F16 (did you mean DelayedScaling?)"),
])
def test_fp8_attention_that_would_not_run_is_one_line(recipe, gpu, env, message, tmp_path, capsys):
    code, lines, _ = run_render(tmp_path, capsys, with_attention(recipe, gpu, env))
    assert code == 2 and len(lines) == 1
    where, found = lines[0].split(": run r_cs: ", 1)
    assert found == message
    # A problem with the variable's value points at the variable.
    assert where == (f"axes.recipe.cs.env.{ENV}" if message.startswith(ENV) else
                     f"axes.recipe.cs.megatron.precision.{FLAG}")


def nvfp4_with_attention(env=None):
    m = broken(**{"target/gpu": "B200"})
    m["axes"]["recipe"]["cs"] = {"megatron": {"precision": {"--fp4-format": "e2m1", "--fp4-recipe": "nvfp4",
                                                            FLAG: True}}}
    if env:
        m["axes"]["recipe"]["cs"]["env"] = {ENV: env}
    return m


def test_nvfp4_attention_runs_in_the_fp8_recipe_the_variable_names(tmp_path, capsys):
    code, lines, _ = run_render(tmp_path, capsys, nvfp4_with_attention())
    assert code == 2
    assert lines == [f"axes.recipe.cs.megatron.precision.{FLAG}: run r_cs: Transformer Engine has no NVFP4 "
                     f"attention: set env {ENV} to the FP8 recipe attention runs in (DelayedScaling, "
                     "Float8CurrentScaling, MXFP8BlockScaling)"]
    code, lines, out = run_render(tmp_path, capsys, nvfp4_with_attention("DelayedScaling"))
    assert (code, lines) == (0, [])


def test_fp8_attention_needs_an_fp8_recipe_and_fused_attention(tmp_path, capsys):
    m = broken(**{"target/gpu": "H200", f"megatron/precision/{FLAG}": True})  # the BF16 run too
    code, lines, _ = run_render(tmp_path, capsys, m)
    assert code == 2
    assert lines == [f"megatron.precision.{FLAG}: run r_bf16: {FLAG} has no effect without --fp8-format "
                     "(e4m3 or hybrid)",
                     f"megatron.precision.{FLAG}: run r_cs: Transformer Engine has tensorwise FP8 attention only "
                     "from compute capability 10.0 (H200 is 9.0) and would find no attention backend; set env "
                     f"{ENV}: DelayedScaling (FP8 attention in delayed scaling, the linear layers stay "
                     "tensorwise FP8)"]
    m = with_attention("delayed", **{"megatron/model/--attention-backend": "flash"})
    code, lines, _ = run_render(tmp_path, capsys, m)
    assert code == 2
    assert lines == ["megatron.model.--attention-backend: run r_cs: FP8 attention runs only in cuDNN fused "
                     "attention, not --attention-backend flash; use fused"]


@pytest.mark.parametrize("flag_value", [None, False])  # absent, or written false
def test_the_attention_recipe_switch_alone_is_refused(flag_value, tmp_path, capsys):
    m = broken(**{"target/gpu": "H200"})
    m["axes"]["recipe"]["cs"]["env"] = {ENV: "DelayedScaling"}
    if flag_value is not None:
        m["axes"]["recipe"]["cs"]["megatron"]["precision"][FLAG] = flag_value
    code, lines, _ = run_render(tmp_path, capsys, m)
    assert code == 2
    assert lines == [f"axes.recipe.cs.env.{ENV}: run r_cs: {ENV} acts only with {FLAG}: add the flag or remove it"]


# --- the flag on Megatron's parser ----------------------------------------------------------


def test_add_suite_flags_adds_what_the_parser_lacks():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bf16", action="store_true")
    add_suite_flags(parser)
    args = parser.parse_args([FLAG])
    assert args.fp8_dot_product_attention is True
    assert parser.parse_args([]).fp8_dot_product_attention is False


def test_add_suite_flags_keeps_a_release_s_own_definition():
    parser = argparse.ArgumentParser()
    parser.add_argument(FLAG, dest="fp8_dot_product_attention", type=int, default=7)
    add_suite_flags(parser)  # no argparse conflict
    assert parser.parse_args([]).fp8_dot_product_attention == 7


def test_the_flag_snapshot_knows_the_suite_flags():
    snapshot = load_snapshot("0.19.2")
    for flag, (spec, _) in SUITE_FLAGS.items():
        assert snapshot[flag] == spec
        assert spec.dest.replace("_", "-") == flag[2:]  # Megatron copies it into TransformerConfig by name


def test_the_suite_entry_and_megatrons_checks_use_the_suite_flags():
    for path in ("tools/pretrain_gpt.py", "tools/fp8suite/megatron/validate.py"):
        text = (REPO / path).read_text()
        assert "add_suite_flags" in text.split("import add_suite_flags", 1)[1], path


# --- the report ---------------------------------------------------------------------------


def test_a_log_with_fp8_attention_is_labelled_and_its_own_recipe():
    dump = {"fp8": "hybrid", "fp8_recipe": "tensorwise", "bf16": "True", "fp8_dot_product_attention": "True"}
    n = recipes.of_args(dump)
    assert n.fp8_attention and n.label == "FP8 tensorwise +FP8 attention (hybrid)"
    assert not recipes.of_args({**dump, "fp8_dot_product_attention": "False"}).fp8_attention
    assert "fp8_dot_product_attention" in recipes.arg_names(n)
    assert "fp8_dot_product_attention" in compare._recipe_args(dump)  # shown in the label, not as a setting


SHAPE = {"num_layers": "8", "hidden_size": "4096", "ffn_hidden_size": "14336", "num_attention_heads": "32",
         "seq_length": "8192", "global_batch_size": "8", "world_size": "1", "micro_batch_size": "1",
         "bf16": "True"}  # as Megatron's arguments dump prints them


def test_micro_batch_is_a_setting_not_a_shape():
    mbs2 = {**SHAPE, "micro_batch_size": "2"}
    assert metrics.shape(SHAPE) == metrics.shape(mbs2)  # one comparison group
    assert not metrics.same_setup(SHAPE, mbs2)  # but no repeat of each other
    assert metrics.same_setup(SHAPE, dict(SHAPE))
    assert metrics.shape(SHAPE) != metrics.shape({**SHAPE, "global_batch_size": "16"})


# --- what the log says ran ---------------------------------------------------------------

REAL = REPO / "logs" / "h200_8b_one_gpu"
ASKED = "one_llama3_8b_h200_fp8_cs_fp8_attention"
FP8_LINE = "INFO:DotProductAttention:Running with FusedAttention backend (sub-backend 2)"


def test_the_parser_reads_the_attention_backends_te_names():
    text = "\n".join(["[INFO     | DotProductAttention]: Running with FusedAttention backend (sub-backend 1)",
                      FP8_LINE, FP8_LINE, "Running with FlashAttention backend (version 2.7.4)",
                      "INFO:DotProductAttention:Running with UnfusedDotProductAttention backend", ""])
    log = logparse.parse_log(text.encode())
    assert log.attention_backends == [("FusedAttention", "1"), ("FusedAttention", "2"),
                                      ("FlashAttention", "2.7.4"), ("UnfusedDotProductAttention", "")]
    assert metrics.attention_text(log.attention_backends[1:2]) == "cuDNN fused attention, FP8 (TE sub-backend 2)"
    assert logparse.parse_log(b"iteration 1/ 1 |\n").attention_backends == []


def report_of(tmp_path, text):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / f"{ASKED}.log").write_text(text)
    assert report.main([str(logs), "--out", str(tmp_path / "out")]) == 0
    data = json.loads((tmp_path / "out" / "summary.json").read_text())
    return next(r for r in data["runs"] if r["name"] == ASKED)


def test_a_run_whose_fp8_attention_ran_says_so(tmp_path):
    text = (REAL / f"{ASKED}.log").read_text()
    assert FP8_LINE in text  # the committed run: TE ran cuDNN's FP8 attention
    run = report_of(tmp_path, text)
    assert run["attention"] == "cuDNN fused attention, FP8 (TE sub-backend 2)"
    assert not [n for n in run["notes"] if "attention" in n]


def test_fp8_attention_asked_but_not_run_is_said(tmp_path):
    text = (REAL / f"{ASKED}.log").read_text().replace("(sub-backend 2)", "(sub-backend 1)")
    run = report_of(tmp_path, text)
    assert ("FP8 attention asked, but Transformer Engine ran cuDNN fused attention, BF16/FP16 (TE "
            "sub-backend 1): attention was not FP8") in run["notes"]


def test_fp8_attention_asked_without_the_backend_in_the_log_is_not_vouched_for(tmp_path):
    text = (REAL / f"{ASKED}.log").read_text().replace(FP8_LINE, "")
    run = report_of(tmp_path, text)
    assert run["attention"] is None
    assert ("FP8 attention asked; the log does not name the attention Transformer Engine ran "
            "(NVTE_DEBUG=1 NVTE_DEBUG_LEVEL=1 names it): not shown to be FP8") in run["notes"]

"""Pre-flight frictions and advice: did-you-mean for names that differ only in case, no
follow-on problems after a refused value, Megatron's quoted messages filled with the run's
values."""

from __future__ import annotations

from pathlib import Path

import yaml

from conftest import REPO
import render

BENCH = REPO / "experiments" / "h200x2_8b_bench.yaml"


def _bench(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(BENCH.read_text())
    edit(data)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _render_errors(path: Path, tmp_path: Path, capsys) -> tuple[int, list[str]]:
    code = render.main([str(path), "--out", str(tmp_path / "gen")])
    return code, capsys.readouterr().err.splitlines()


def test_a_gpu_written_in_lower_case_gets_a_did_you_mean(tmp_path, capsys):
    path = _bench(tmp_path, lambda d: d["target"].update(gpu="h200"))
    code, err = _render_errors(path, tmp_path, capsys)
    assert code == 2
    assert any("target.gpu:" in line and "unknown GPU 'h200' (did you mean H200?); known: H100, H200" in line
               for line in err), err


def test_a_different_gpu_is_not_guessed_from_its_spelling(tmp_path, capsys):
    path = _bench(tmp_path, lambda d: d["target"].update(gpu="A100"))
    code, err = _render_errors(path, tmp_path, capsys)
    assert code == 2 and any("unknown GPU 'A100'; known:" in line for line in err), err


def test_a_refused_format_sets_off_no_follow_on_problem(tmp_path, capsys):
    def edit(d):
        d["axes"]["recipe"]["fp8_cs"]["megatron"]["precision"]["--fp8-format"] = "E4M3"
        d["megatron"]["precision"].update({"--fp8-format": "E4M3", "--fp8-recipe": "tensorwise"})
    code, err = _render_errors(_bench(tmp_path, edit), tmp_path, capsys)
    problems = [line for line in err if not line.startswith("render:")]
    assert code == 2
    assert problems and all("--fp8-format: 'E4M3' is not one of: e4m3, hybrid (did you mean e4m3?)" in line
                            for line in problems), problems


SEED = REPO / "experiments" / "h200_8b.yaml"


def test_name_and_value_problems_skip_the_checks_of_meaning(tmp_path, capsys):
    """One mistake, one line: a misspelt flag, an invalid choice, an unknown recipe and a word
    where an integer goes are reported alone, each once, with no rule of meaning (recipe rules,
    Megatron's cross-flag rules, memory) set off for the runs they are in. A run without such a
    problem is still checked in full."""
    data = yaml.safe_load(SEED.read_text())
    rec = data["axes"]["recipe"]
    prec = lambda v: rec[v]["megatron"]["precision"]  # noqa: E731
    prec("fp8_cs_1F1L")["--fp8-recipe"] = "tensorwize"           # choice: delayed would be the fallback
    prec("fp8_blockwise")["--fp8-recipe"] = "nonexistent"        # recipe value
    rec["fp8_cs"]["megatron"]["parallel"] = {"--overlap-grad-reduse": True, "--overlap-grad-reduce": None}
    rec["fp8"]["megatron"]["training"] = {"--micro-batch-size": "one"}  # int type
    rec["bf16"] = {"megatron": {"precision": {"--fp8-amax-history-len": 16}}}  # clean: a real problem
    path = tmp_path / "typos.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    code, err = _render_errors(path, tmp_path, capsys)
    problems = [line for line in err if not line.startswith("render:")]
    assert code == 2 and not (tmp_path / "gen").exists()
    assert err[-1] == f"render: {len(problems)} problem(s); nothing written"
    key = f"{path}: axes.recipe."
    assert sorted(problems) == sorted([
        f"{key}fp8_cs_1F1L.megatron.precision.--fp8-recipe: 'tensorwize' is not one of: tensorwise, "
        "delayed, mxfp8, blockwise, custom (did you mean tensorwise?)",
        f"{key}fp8_blockwise.megatron.precision.--fp8-recipe: 'nonexistent' is not one of: tensorwise, "
        "delayed, mxfp8, blockwise, custom",
        f"{key}fp8_cs.megatron.parallel.--overlap-grad-reduse: unknown Megatron flag (did you mean "
        "--overlap-grad-reduce?)",
        f"{key}fp8.megatron.training.--micro-batch-size: expects an integer, got 'one'",
        *[line for line in problems if "run train_llama3_8b_h200_bf16:" in line],
    ]), problems
    assert any("--fp8-amax-history-len has no effect without --fp8-format" in line for line in problems), problems


def test_a_value_problem_of_the_base_skips_the_checks_of_meaning_for_every_run(tmp_path, capsys):
    data = yaml.safe_load(SEED.read_text())
    data["megatron"]["parallel"]["--overlap-grad-reduse"] = data["megatron"]["parallel"].pop("--overlap-grad-reduce")
    data["target"]["gpus_per_node"] = "eight"
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    code, err = _render_errors(path, tmp_path, capsys)
    problems = [line for line in err if not line.startswith("render:")]
    assert code == 2 and len(problems) == 2, problems
    assert "--overlap-grad-reduse: unknown Megatron flag" in problems[0] or \
        "--overlap-grad-reduse: unknown Megatron flag" in problems[1], problems
    assert not any("refuses" in line or "cannot fit" in line for line in problems), problems


def test_h200x8_matrix_is_the_full_scale_seed_setting():
    """experiments/h200x8_8b.yaml (issue 29): 8 H200s of one node, full Llama-3-8B at seq 8192,
    micro batch 1, global batch 128, BF16 and every Hopper FP8 recipe, each tuned and as the
    seed ran it, >= 60 iterations, a separate repeat row for profiling; it passes pre-flight."""
    from fp8suite.megatron import recipes
    from fp8suite.config.matrix import load

    _, runs = load(REPO / "experiments" / "h200x8_8b.yaml")  # raises on any pre-flight problem
    assert len(runs) == 15
    kinds = {recipes.of_flags(r.flags).recipe.name for r in runs}
    assert kinds == {"bf16", "delayed", "tensorwise", "blockwise"}
    assert any(recipes.of_flags(r.flags).first_last_bf16 for r in runs)
    for r in runs:
        t = r.settings.target
        assert (t.gpu, t.gpus_per_node, t.nodes) == ("H200", 8, 1)
        f = r.flags
        assert (f["--num-layers"], f["--seq-length"], f["--micro-batch-size"], f["--global-batch-size"]) == \
            (32, 8192, 1, 128)
        assert f["--train-iters"] >= 60
        assert not any(k.startswith("--profile") for k in f), "the timed rows stay unprofiled"
    settings = {r.axes["setting"] for r in runs}
    assert settings == {"tuned", "seed", "tuned_profiled"}
    tuned = {r.axes["recipe"]: r for r in runs if r.axes["setting"] == "tuned"}
    profiled = {r.axes["recipe"]: r for r in runs if r.axes["setting"] == "tuned_profiled"}
    assert all(tuned[k].flags == profiled[k].flags for k in tuned)
    assert all(r.settings.gradient_accumulation_fusion == "te" for r in tuned.values())
    assert not any(r.flags.get("--fp8-param-gather") for r in tuned.values())
    seed = {r.axes["recipe"]: r for r in runs if r.axes["setting"] == "seed"}
    assert seed["fp8_cs"].flags.get("--fp8-param-gather") and "--cross-entropy-loss-fusion" not in seed["fp8_cs"].flags
    assert (REPO / "experiments" / "generated" / "h200x8_8b.manifest.json").is_file()

"""The renderer: golden scripts, one test per pre-flight rule with its exact message,
determinism, --check, and shell hygiene (bash -n, shellcheck) of every generated script."""

import json
import os
import shutil
import subprocess

import pytest
import yaml

from conftest import REPO, committed_matrices
import render
from fp8suite.render import manifest
from fp8suite.common import paths
from fp8suite.config.matrix import load
from fp8suite.render.templating import render_runs
from helpers import BASE, CS, DELETE, broken, run_render

GENERATED = REPO / "experiments" / "generated"
MATRICES = committed_matrices()

# A small valid matrix; each rule test breaks one thing in a copy of it.


def test_base_matrix_is_valid(tmp_path, capsys):
    code, lines, out = run_render(tmp_path, capsys, BASE)
    assert (code, lines) == (0, [])
    assert sorted(p.name for p in out.iterdir()) == [
        "m.manifest.json", "r_bf16.sbatch", "r_bf16.sh", "r_cs.sbatch", "r_cs.sh"]


RULES = [
    # (changes, expected lines) -- every message exactly as the user sees it
    ({"tagret": {}}, ["tagret: unknown key (did you mean target?); valid keys: name, description, "
                      "run_name, axes, exclude, target, env, data, megatron, wandb, checkpoint, slurm, "
                      "triton_cache_dir, min_free_gb, gradient_accumulation_fusion, log_dir"]),
    ({"target/gpus_per_nod": 2}, ["target.gpus_per_nod: unknown key (did you mean gpus_per_node?); valid keys: "
                                  "gpu, gpus_per_node, nodes, transformer_engine, cuda, megatron_core"]),
    ({"target/gpus_per_node": "eight"}, ["target.gpus_per_node: expected an integer, got str 'eight'"]),
    ({"megatron/model/--num-layer": 4},
     ["megatron.model.--num-layer: unknown Megatron flag (did you mean --num-layers?)"]),
    ({"megatron/precision/--bf16": "yes"},  # alone: the checks of meaning skip a run with a refused value
     ["megatron.precision.--bf16: is a switch: write true or false, not 'yes'"]),
    ({"megatron/model/--num-layers": True}, ["megatron.model.--num-layers: takes a value, not true"]),
    ({f"{CS}/--fp8-recipe": "perblock"},
     ["axes.recipe.cs.megatron.precision.--fp8-recipe: 'perblock' is not one of: tensorwise, delayed, mxfp8, "
      "blockwise, custom"]),
    ({"megatron/training/--train-iters": "ten"}, ["megatron.training.--train-iters: expects an integer, got 'ten'"]),
    ({"megatron/training/--data-path": ["x"]},
     ["megatron.training.--data-path: set it as data.data_path instead (the scripts build it, with launch overrides)"]),
    ({f"{CS}/--fp8-recipe": "delayed", f"{CS}/--first-last-layers-bf16": True},
     ["axes.recipe.cs.megatron.precision.--first-last-layers-bf16: run r_cs: the delayed recipe cannot keep the "
      "first/last layers in BF16 (Megatron raises ValueError); use --fp8-recipe tensorwise or blockwise, or drop "
      "the flag"]),
    ({f"{CS}/--fp8-recipe": "mxfp8"},
     ["axes.recipe.cs.megatron.precision.--fp8-recipe: run r_cs: MXFP8 needs a Blackwell GPU (B200, B300, GB200, "
      "GB300); target.gpu is H100"]),
    ({f"{CS}/--fp8-recipe": "blockwise", "target/transformer_engine": "2.2"},
     ["target.transformer_engine: run r_cs: blockwise FP8 needs Transformer Engine >= 2.3; target has 2.2"]),
    ({f"{CS}/--fp8-recipe": "blockwise", "target/cuda": "12.8"},
     ["target.cuda: run r_cs: blockwise FP8 needs CUDA >= 12.9; target has 12.8"]),
    ({f"{CS}/--fp8-param-gather": True, "megatron/training/--use-distributed-optimizer": DELETE},
     ["axes.recipe.cs.megatron.precision.--fp8-param-gather: run r_cs: --fp8-param-gather needs "
      "--use-distributed-optimizer (or FSDP)"]),
    ({"megatron/model/--tensor-model-parallel-size": 3},
     ["megatron.model.--tensor-model-parallel-size: runs r_bf16, r_cs: world size 8 (target.nodes x "
      "target.gpus_per_node) is not divisible by TP x PP x CP = 3 x 1 x 1"]),
    ({"megatron/training/--global-batch-size": 12},
     ["megatron.training.--global-batch-size: runs r_bf16, r_cs: global batch 12 is not divisible by micro "
      "batch x data-parallel size = 1 x 8"]),
    ({"megatron/model/--tensor-model-parallel-size": 8, "megatron/model/--num-attention-heads": 12,
      "megatron/model/--hidden-size": 384},
     ["megatron.model.--num-attention-heads: runs r_bf16, r_cs: 12 attention heads are not divisible by tensor "
      "parallel size 8"]),
    ({"megatron/model/--pipeline-model-parallel-size": 8, "megatron/model/--num-layers": 12,
      "megatron/training/--global-batch-size": 2},
     ["megatron.model.--num-layers: runs r_bf16, r_cs: 12 layers are not divisible by pipeline parallel size 8"]),
    ({f"{CS}/--first-last-layers-bf16": True, f"{CS}/--num-layers-at-start-in-bf16": 5},
     ["axes.recipe.cs.megatron.precision.--num-layers-at-start-in-bf16: run r_cs: --num-layers-at-start-in-bf16 "
      "5 must be between 0 and the 4 layers per pipeline stage"]),
    ({"run_name": "r"}, ["run_name: runs {'recipe': 'bf16'} and {'recipe': 'cs'} are both named r: add the "
                         "differing axis to the template"]),
    ({"run_name": "r_{recipe};rm -rf ~"},
     ["run_name: 'r_{recipe};rm -rf ~' does not make safe file names (letters, digits, '_', '.', '-')"]),
    ({"run_name": "r_{recipes}"}, ["run_name: placeholder {recipes} is not an axis (did you mean recipe?); axes: recipe"]),
    ({"env": {"NCCL_DEBUG": "INFO\nrm -rf /"}}, ["env.NCCL_DEBUG: control characters (newlines, tabs) are not allowed"]),
    ({"env": {"BAD-NAME": 1}}, ["env.BAD-NAME: not a valid environment variable name"]),
    ({"megatron/logging/--eval-interval": DELETE},
     ["megatron: runs r_bf16, r_cs: --eval-interval is required (megatron-core 0.19 crashes computing sample "
      "counts without it); use --eval-iters 0 to turn evaluation off"]),
    ({"megatron/model/--attention-backend": "fused", "env": {"NVTE_FUSED_ATTN": 0}},
     ["env.NVTE_FUSED_ATTN: runs r_bf16, r_cs: NVTE_FUSED_ATTN=0 contradicts --attention-backend fused, for which "
      "Megatron asserts NVTE_FUSED_ATTN is unset or 1"]),
    ({f"{CS}/--fp8-amax-history-len": 1024},
     ["axes.recipe.cs.megatron.precision.--fp8-amax-history-len: run r_cs: --fp8-amax-history-len acts only on "
      "the delayed recipe, not tensorwise; remove it"]),
    ({"megatron/precision/--fp8-recipe": "tensorwise"},
     ["megatron.precision.--fp8-recipe: run r_bf16: --fp8-recipe has no effect without --fp8-format (e4m3 or hybrid)"]),
    ({f"{CS}/--bf16": False},
     ["axes.recipe.cs.megatron.precision.--fp8-format: run r_cs: FP8 training needs --bf16 (or --fp16) as well"]),
    ({"exclude": [{"recipes": "cs"}]}, ["exclude[0].recipes: no such axis (did you mean recipe?); axes: recipe"]),
    ({"exclude": [{"recipe": "cs"}, {}]}, ["exclude[1]: empty: name the axes and values to leave out"]),
    ({"data": {"mock_data": True}},
     ["data.mock_data: runs r_bf16, r_cs: mock data needs data.vocab_size (the NullTokenizer's vocabulary, which "
      "sizes the model)"]),
    ({"data": {"mock_data": False, "tokenizer_model": "x"}},
     ["data.mock_data: runs r_bf16, r_cs: data.data_path is empty: give indexed-dataset prefixes or set "
      "data.mock_data: true"]),
    ({"megatron/training/--lr-warmup-iters": 10},
     ["megatron.training.--lr-warmup-iters: runs r_bf16, r_cs: --lr-warmup-iters 10 must be below --train-iters 10 "
      "(Megatron's learning-rate scheduler asserts it); shorten both when shortening a run"]),
    ({"target/gpu": "A100"}, ["target.gpu: runs r_bf16, r_cs: unknown GPU 'A100'; known: H100, H200, H800, H20, "
                              "GH200, B200, B300, GB200, GB300"]),
    ({"slurm": {"partition": "gpu; rm"}}, ["slurm.partition: runs r_bf16, r_cs: 'gpu; rm' is not a valid Slurm name"]),
    ({"megatron/model/--num-layers": None}, []),  # null removes a flag: still valid
]


@pytest.mark.parametrize("changes,expected", RULES, ids=[next(iter(c)) for c, _ in RULES])
def test_rule(changes, expected, tmp_path, capsys):
    code, lines, out = run_render(tmp_path, capsys, broken(**changes))
    assert lines == expected
    assert code == (2 if expected else 0)
    if expected:
        assert not out.exists(), "nothing may be written when a matrix is invalid"


def test_mxfp8_renders_for_blackwell(tmp_path, capsys):
    code, lines, _ = run_render(tmp_path, capsys, broken(**{f"{CS}/--fp8-recipe": "mxfp8", "target/gpu": "B200"}))
    assert (code, lines) == (0, [])


def test_all_problems_of_a_file_at_once(tmp_path, capsys):
    """Every problem at once, one line each; a run with a name or value problem (here the BF16
    run's misspelt flag) reports only that, the other runs are checked in full."""
    matrix = broken(**{"tagret": {}, "axes/recipe/bf16/megatron/model/--num-layer": 4,
                       f"{CS}/--fp8-recipe": "delayed", f"{CS}/--first-last-layers-bf16": True})
    code, lines, out = run_render(tmp_path, capsys, matrix)
    assert code == 2 and not out.exists()
    assert [line.split(":")[0] for line in lines] == [
        "tagret", "axes.recipe.bf16.megatron.model.--num-layer",
        "axes.recipe.cs.megatron.precision.--first-last-layers-bf16"]
    matrix = broken(**{"megatron/model/--num-layer": 4, f"{CS}/--fp8-recipe": "delayed",
                       f"{CS}/--first-last-layers-bf16": True})
    code, lines, out = run_render(tmp_path, capsys, matrix)
    assert [line.split(":")[0] for line in lines] == ["megatron.model.--num-layer"]


def test_invalid_yaml_is_one_line(tmp_path, capsys):
    code, lines, _ = run_render(tmp_path, capsys, "name: [unclosed\n")
    assert code == 2
    assert lines == ["invalid YAML: line 2, column 1: expected ',' or ']', but got '<stream end>'"]


def test_missing_file(tmp_path, capsys):
    code = render.main([str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "gen")])
    assert code == 2
    assert "nope.yaml: cannot read: No such file or directory" in capsys.readouterr().err


def test_excludes_and_name_template(tmp_path, capsys):
    matrix = broken(**{"axes/seq": {"s1k": {}, "s2k": {"megatron": {"model": {
                           "--seq-length": 2048, "--max-position-embeddings": 2048}}}},
                       "run_name": "r_{recipe}_{seq}", "exclude": [{"recipe": "cs", "seq": ["s2k"]}]})
    code, lines, out = run_render(tmp_path, capsys, matrix)
    assert (code, lines) == (0, [])
    assert sorted(p.stem for p in out.glob("*.sh")) == ["r_bf16_s1k", "r_bf16_s2k", "r_cs_s1k"]
    assert "--seq-length 2048" in (out / "r_bf16_s2k.sh").read_text()


def test_values_are_quoted_for_the_shell(tmp_path, capsys):
    matrix = broken(**{"megatron/model/--tokenizer-special-tokens": ["<a b>", "x'y", "$HOME"],
                       "env": {"MY_VAR": "a b `touch /tmp/pwned` \\x \"q\""}})
    code, lines, out = run_render(tmp_path, capsys, matrix)
    assert (code, lines) == (0, [])
    text = (out / "r_bf16.sh").read_text()
    # Text with $, backquotes, backslashes or quotes is double-quoted with those escaped.
    assert "--tokenizer-special-tokens '<a b>' \"x'y\" \"\\$HOME\"" in text
    assert 'export MY_VAR="a b \\`touch /tmp/pwned\\` \\\\x \\"q\\""' in text


def committed_expected():
    for path in MATRICES:
        shown = str(path.relative_to(REPO))
        matrix, runs = load(path, shown)
        rendered = render_runs(matrix, runs, shown, GENERATED)
        yield path, manifest.files(matrix, shown, rendered, GENERATED)


GOLDEN_MATRIX = REPO / "tests" / "data" / "render_golden.yaml"
GOLDEN_OUT = REPO / "tests" / "data" / "generated"  # where the scripts would go; never written
GOLDEN_FILES = ("render_golden.manifest.json", "gold_nvfp4_s2k.sh", "gold_nvfp4_s2k.sbatch",
                "gold_mxfp8_s4k.sh", "gold_bf16_s4k.sbatch")


def golden_render() -> dict:
    shown = str(GOLDEN_MATRIX.relative_to(REPO))
    matrix, runs = load(GOLDEN_MATRIX, shown)
    return manifest.files(matrix, shown, render_runs(matrix, runs, shown, GOLDEN_OUT), GOLDEN_OUT)


def test_golden_scripts(golden):
    """tests/data/render_golden.yaml: W&B, a container image and mounts, two-node batch scripts,
    excludes, real data, MXFP8 and NVFP4 on B200 (the production scripts are pinned by --check)."""
    files = golden_render()
    assert sorted(p.name for p in files if p.suffix == ".sh") == [
        "gold_bf16_s2k.sh", "gold_bf16_s4k.sh", "gold_mxfp8_s2k.sh", "gold_mxfp8_s4k.sh", "gold_nvfp4_s2k.sh"]
    for name in GOLDEN_FILES:
        golden(f"render/{name}", files[GOLDEN_OUT / name])


def test_golden_matrix_takes_the_branches(tmp_path):
    files = {p.name: text for p, text in golden_render().items()}
    sh, sbatch = files["gold_nvfp4_s2k.sh"], files["gold_nvfp4_s2k.sbatch"]
    assert "# Run gold_nvfp4_s2k of study golden_b200: FP4 NVFP4 (BF16 first/last 1/2) (e2m1)" in sh
    assert "--fp4-format e2m1" in sh and "--wandb-project" in sh and "--wandb-entity" in sh
    assert "#SBATCH --nodes=2" in sbatch and "#SBATCH --exclusive" in sbatch
    assert "--container-image=nvcr.io/nvidia/pytorch:25.09-py3" in sbatch
    assert '--container-mounts="$SUITE_DIR:$SUITE_DIR,/data:/data,/scratch:/scratch"' in sbatch
    entries = json.loads(files["render_golden.manifest.json"])["runs"]
    assert [(e["name"], e["recipe"], e["gpu"]) for e in entries][-1] == ("gold_nvfp4_s2k", "nvfp4-bf16-first1-last2", "B200")
    for name, text in files.items():
        if name.endswith((".sh", ".sbatch")):
            path = tmp_path / name
            path.write_text(text)
            subprocess.run(["bash", "-n", str(path)], check=True)
            if shutil.which("shellcheck"):
                result = subprocess.run(["shellcheck", str(path)], capture_output=True, text=True)
                assert result.returncode == 0, result.stdout


def test_seed_study_runs_and_flags():
    files = dict(committed_expected())[REPO / "experiments" / "h200_8b.yaml"]
    scripts = {p.name: t for p, t in files.items() if p.suffix == ".sh"}
    assert sorted(scripts) == sorted(f"train_llama3_8b_h200_{r}.sh" for r in
                                     ("bf16", "fp8", "fp8_cs", "fp8_cs_1F1L", "fp8_blockwise"))
    assert "--fp8-recipe delayed" in scripts["train_llama3_8b_h200_fp8.sh"]
    assert "--fp8-amax-history-len 1024" in scripts["train_llama3_8b_h200_fp8.sh"]
    assert "--fp8-amax-compute-algo max" in scripts["train_llama3_8b_h200_fp8.sh"]
    assert "--fp8-param-gather" in scripts["train_llama3_8b_h200_fp8.sh"]
    assert "--first-last-layers-bf16" in scripts["train_llama3_8b_h200_fp8_cs_1F1L.sh"]
    assert "--attention-backend fused" in scripts["train_llama3_8b_h200_fp8_blockwise.sh"]
    assert "--fp8-format" not in scripts["train_llama3_8b_h200_bf16.sh"]


def test_committed_generated_files_are_up_to_date(capsys):
    assert render.main([str(p) for p in MATRICES] + ["--check"]) == 0, capsys.readouterr().err


def test_rendering_is_deterministic(tmp_path, capsys):
    _, _, out = run_render(tmp_path, capsys, BASE)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert render.main([str(tmp_path / "m.yaml"), "--out", str(out)]) == 0
    assert "(0 file(s) changed)" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first


def test_check_finds_stale_and_leftover_files(tmp_path, capsys):
    _, _, out = run_render(tmp_path, capsys, BASE)
    (out / "r_cs.sh").write_text("edited by hand\n")
    matrix = tmp_path / "m.yaml"
    assert render.main([str(matrix), "--out", str(out), "--check"]) == 1
    assert "r_cs.sh is out of date" in capsys.readouterr().err
    # Drop a run from the matrix: its old scripts are left-overs, and a render removes them.
    smaller = broken(**{"axes/recipe/cs": DELETE})
    matrix.write_text(yaml.safe_dump(smaller, sort_keys=False))
    assert render.main([str(matrix), "--out", str(out), "--check"]) == 1
    assert "r_cs.sbatch is left over from a run the matrix no longer has" in capsys.readouterr().err
    assert render.main([str(matrix), "--out", str(out)]) == 0
    assert not (out / "r_cs.sh").exists() and not (out / "r_cs.sbatch").exists()


GENERATED_SCRIPTS = sorted(GENERATED.glob("*.sh")) + sorted(GENERATED.glob("*.sbatch"))


@pytest.mark.parametrize("script", GENERATED_SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script):
    subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.parametrize("script", GENERATED_SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean(script):
    if not shutil.which("shellcheck"):
        if os.environ.get("FP8SUITE_REQUIRE_SHELLCHECK") == "1":
            pytest.fail("shellcheck is required here but not installed (apt-get install shellcheck)")
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("name", [*paths.KNOBS, "WANDB_API_KEY"])
def test_matrix_env_cannot_set_a_launch_setting_or_the_wandb_key(name, tmp_path, capsys):
    """Every launch setting the scripts read (one list: paths.KNOBS) is set at launch, never by a
    matrix's env (the script's export would override the caller's value while the sidecar records
    the caller's); the W&B key never sits in a file."""
    code, lines, _ = run_render(tmp_path, capsys, broken(**{f"env/{name}": "x"}))
    assert code == 2
    assert any(line.startswith(f"env.{name}: ") for line in lines), lines


def test_committed_matrices_are_the_tracked_ones():
    """A draft kept untracked in experiments/ is not read by the tests of committed matrices."""
    draft = REPO / "experiments" / "zz_untracked_draft_for_test.yaml"
    draft.write_text("name: [not, valid\n")
    try:
        found = committed_matrices()
    finally:
        draft.unlink()
    assert draft not in found
    assert REPO / "experiments" / "h200_8b.yaml" in found

"""What differs besides precision beyond the arguments: the launch environment variables that
can change speed or numerics, and the GPU and software of the sidecars."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from fp8suite.launch import sidecar
from fp8suite.logs import launchenv
from fp8suite.report import markdown
from fp8suite.report import verdict
from helpers import SHAPE, groups_of, write_log

FP8 = {"fp8": "hybrid", "fp8_recipe": "tensorwise"}
SOFTWARE = {"gpu": {"name": "NVIDIA H200", "driver": "580.159.04"}, "torch": "2.11.0",
            "cuda": "13.0", "transformer_engine": "2.20.2", "megatron_core": "0.19.2",
            "apex": None}


def write_sidecar(log: Path, **fields) -> None:
    data = {"run": log.stem, "exit_code": 0, "environment": SOFTWARE, **fields}
    log.with_name(log.stem + ".meta.json").write_text(json.dumps(data))


def test_the_sidecar_records_the_settings_of_the_environment_not_its_places(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setattr(sidecar, "describe", lambda: {})
    monkeypatch.setattr(sidecar, "cuda_driver_version", lambda: None)
    monkeypatch.setattr(sidecar.os, "environ", {
        "NVTE_FUSED_ATTN": "0", "NVTE_DPA_FP8_RECIPE": "DelayedScaling",
        "CUDA_DEVICE_MAX_CONNECTIONS": "1", "NCCL_NVLS_ENABLE": "0",
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True", "OMP_NUM_THREADS": "8",
        "CUBLASLT_WORKSPACE_SIZE": "1024",
        # places, the cards and unrelated names are left out
        "TRITON_CACHE_DIR": "/tmp/t", "CUDA_CACHE_PATH": "/tmp/c", "NCCL_DEBUG_FILE": "/tmp/n",
        "TORCH_HOME": "/tmp/h", "CUDA_VISIBLE_DEVICES": "0,1", "LOG_FILE": "/tmp/x.log",
        "HOME": "/root", "MASTER_PORT": "6000", "WANDB_API_KEY": "secret"})
    meta = tmp_path / "run.meta.json"
    written = sidecar.start(meta, "run", str(tmp_path / "run.sh"), "m.yaml", "run.log", [], [])
    expected = {"CUBLASLT_WORKSPACE_SIZE": "1024", "CUDA_DEVICE_MAX_CONNECTIONS": "1",
                "NCCL_NVLS_ENABLE": "0", "NVTE_DPA_FP8_RECIPE": "DelayedScaling",
                "NVTE_FUSED_ATTN": "0", "OMP_NUM_THREADS": "8",
                "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    assert written["launch_env"] == expected
    assert json.loads(meta.read_text())["launch_env"] == expected


def test_runs_that_differ_in_an_env_variable_are_not_at_equal_settings(tmp_path):
    env = {"NVTE_FUSED_ATTN": "1", "CUDA_DEVICE_MAX_CONNECTIONS": "1"}
    write_log(tmp_path / "bf16.log", [3.0] * 20, [1000.0] * 20, args=SHAPE)
    write_sidecar(tmp_path / "bf16.log", launch_env=env)
    write_log(tmp_path / "fp8.log", [3.0] * 20, [800.0] * 20, args={**SHAPE, **FP8})
    write_sidecar(tmp_path / "fp8.log", launch_env=env)
    write_log(tmp_path / "fp8_unfused.log", [3.0] * 20, [700.0] * 20, args={**SHAPE, **FP8})
    write_sidecar(tmp_path / "fp8_unfused.log", launch_env={**env, "NVTE_FUSED_ATTN": "0"})
    (g,) = groups_of(tmp_path)
    assert g.differences == [("env NVTE_FUSED_ATTN", [("0", ["fp8_unfused"]),
                                                      ("1", ["bf16", "fp8"])])]
    assert g.env_unknown == []
    v = verdict.build(g)
    # Without the env variable, fp8_unfused (700 ms) would be the fastest at equal settings.
    assert (v.fastest, v.over, v.speedup) == ("fp8", "bf16", 1.25)
    assert v.fastest_overall == "fp8_unfused"
    assert v.fastest_overall_settings == ["env NVTE_FUSED_ATTN 0 (baseline 1)"]
    text = markdown.render([g], {}, "t", "c", ["d"], 3)
    assert "- `env NVTE_FUSED_ATTN`: 0 (fp8_unfused); 1 (bf16, fp8)" in text
    assert "Launch environment unknown" not in text


def test_fp8_attention_env_is_a_setting_not_the_precision(tmp_path):
    write_log(tmp_path / "fp8.log", [3.0] * 20, [800.0] * 20, args={**SHAPE, **FP8})
    write_sidecar(tmp_path / "fp8.log", launch_env={})
    write_log(tmp_path / "fp8_dpa.log", [3.0] * 20, [700.0] * 20, args={**SHAPE, **FP8})
    write_sidecar(tmp_path / "fp8_dpa.log", launch_env={"NVTE_FP8_DPA_BWD": "1"})
    (g,) = groups_of(tmp_path)
    assert g.differences == [("env NVTE_FP8_DPA_BWD", [("(unset)", ["fp8"]), ("1", ["fp8_dpa"])])]


def test_a_different_transformer_engine_is_a_difference(tmp_path):
    write_log(tmp_path / "bf16.log", [3.0] * 20, [1000.0] * 20, args=SHAPE)
    write_sidecar(tmp_path / "bf16.log", launch_env={})
    write_log(tmp_path / "fp8.log", [3.0] * 20, [800.0] * 20, args={**SHAPE, **FP8})
    write_sidecar(tmp_path / "fp8.log", launch_env={},
                  environment={**SOFTWARE, "transformer_engine": "2.8.0", "apex": "0.1"})
    (g,) = groups_of(tmp_path)
    assert g.differences == [("transformer_engine", [("2.20.2", ["bf16"]), ("2.8.0", ["fp8"])]),
                             ("apex", [("(not installed)", ["bf16"]), ("0.1", ["fp8"])])]
    assert g.versus["fp8"].confounds[0] == ("transformer_engine", "2.8.0", "2.20.2")
    text = markdown.render([g], {}, "t", "c", ["d"], 3)
    assert "- `transformer_engine`: 2.20.2 (bf16); 2.8.0 (fp8)" in text


def test_a_sidecar_that_does_not_say_is_no_difference(tmp_path):
    write_log(tmp_path / "bf16.log", [3.0] * 20, [1000.0] * 20, args=SHAPE)
    write_sidecar(tmp_path / "bf16.log", launch_env={})
    write_log(tmp_path / "fp8.log", [3.0] * 20, [800.0] * 20, args={**SHAPE, **FP8})
    write_sidecar(tmp_path / "fp8.log", launch_env={},
                  environment={"gpu": {"name": "NVIDIA H200"}, "cuda": None})
    (g,) = groups_of(tmp_path)
    assert g.differences == []


def old_launch(tmp_path: Path, name: str, args: dict, ms: float, script_text: str,
               sha: str | None = None, overrides: dict | None = None) -> None:
    """A run launched before sidecars recorded launch_env: its script and sidecar."""
    script = tmp_path / "generated" / f"{name}.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(script_text)
    log = tmp_path / "logs" / f"{name}.log"
    write_log(log, [3.0] * 20, [ms] * 20, args=args)
    write_sidecar(log, script=str(script), matrix="experiments/m.yaml",
                  script_sha256=sha or hashlib.sha256(script_text.encode()).hexdigest(),
                  overrides={"args": [], "env": {"MASTER_PORT": f"60{ms:.0f}",
                                                 "LOG_FILE": str(log), **(overrides or {})}})


def write_manifest(tmp_path: Path, envs: dict) -> None:
    runs = [{"name": name, "env": env} for name, env in envs.items()]
    (tmp_path / "generated" / "m.manifest.json").write_text(json.dumps({"runs": runs}))


def test_an_old_sidecar_with_its_script_unchanged_falls_back_to_the_manifest_env(tmp_path):
    old_launch(tmp_path, "bf16", SHAPE, 1000.0, "export NVTE_FUSED_ATTN=1\n")
    old_launch(tmp_path, "fp8", {**SHAPE, **FP8}, 800.0, "export NVTE_FUSED_ATTN=0\n",
               overrides={"NCCL_ALGO": "Ring"})
    write_manifest(tmp_path, {"bf16": {"NVTE_FUSED_ATTN": "1", "TRITON_CACHE_DIR": "/a"},
                              "fp8": {"NVTE_FUSED_ATTN": "0", "TRITON_CACHE_DIR": "/b"}})
    (g,) = groups_of(tmp_path / "logs")
    # MASTER_PORT, LOG_FILE and TRITON_CACHE_DIR differ too, but are no settings.
    assert g.differences == [("env NCCL_ALGO", [("(unset)", ["bf16"]), ("Ring", ["fp8"])]),
                             ("env NVTE_FUSED_ATTN", [("0", ["fp8"]), ("1", ["bf16"])])]
    assert g.env_unknown == []
    # The run's own manifest entry comes first.
    side = json.loads((tmp_path / "logs" / "fp8.meta.json").read_text())
    assert launchenv.launch_env(side, {"env": {"NVTE_FLASH_ATTN": "1"}}) == {
        "NCCL_ALGO": "Ring", "NVTE_FLASH_ATTN": "1"}


def test_an_old_sidecar_whose_script_changed_has_an_unknown_environment(tmp_path):
    old_launch(tmp_path, "bf16", SHAPE, 1000.0, "export NVTE_FUSED_ATTN=1\n")
    old_launch(tmp_path, "fp8", {**SHAPE, **FP8}, 800.0, "export NVTE_FUSED_ATTN=0\n",
               sha="0" * 64)
    write_manifest(tmp_path, {"bf16": {"NVTE_FUSED_ATTN": "1"}, "fp8": {"NVTE_FUSED_ATTN": "0"}})
    (g,) = groups_of(tmp_path / "logs")
    assert g.differences == []
    assert g.env_unknown == ["fp8"]
    text = markdown.render([g], {}, "t", "c", ["d"], 3)
    assert "Launch environment unknown for fp8 (" in text

"""Kernel-table reduction and the step-time breakdown (tools/fp8suite/logs/kernels.py)."""

import gzip
import json
import subprocess
import sys

import pytest

from fp8suite.logs import kernels

REPO_TOOLS = __import__("pathlib").Path(__file__).resolve().parents[1] / "tools"


def _op(name, ts, dur, tid=1):
    return {"ph": "X", "cat": "cpu_op", "name": name, "ts": ts, "dur": dur, "pid": 1, "tid": tid}


def _launch(ts, corr, tid=1):
    return {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": ts, "dur": 1,
            "pid": 1, "tid": tid, "args": {"correlation": corr}}


def _kernel(name, ts, dur, corr, stream=7):
    return {"ph": "X", "cat": "kernel", "name": name, "ts": ts, "dur": dur, "pid": 0, "tid": stream,
            "args": {"correlation": corr, "stream": stream}}


def trace():
    """One step: a BF16 torch GEMM, a TE FP8 GEMM, attention, a cast, and NCCL half overlapped."""
    return {"traceEvents": [
        {"ph": "X", "cat": "user_annotation", "name": "ProfilerStep#20", "ts": 0, "dur": 1000,
         "pid": 1, "tid": 1},
        _op("aten::mm", 10, 20), _launch(12, 1),
        _op("autograd::engine::evaluate_function: _LinearBackward", 40, 30),
        _op("aten::empty", 41, 2), _launch(50, 2),
        _launch(60, 3), _launch(65, 4), _launch(66, 5),
        _kernel("nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NNT", 100, 100, 1),  # no type: by its operator
        _kernel("nvjet_tst_256x128_64x4_2x1_v_bz_coopB_TNT", 200, 50, 2),
        _kernel("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16", 250, 150, 3),
        _kernel("transformer_engine::cast_transpose_kernel<float, __nv_fp8_e4m3>", 400, 50, 4),
        _kernel("ncclDevKernel_ReduceScatter_Sum_f32_RING_LL", 420, 80, 5, stream=20),
    ]}


def test_reduce_trace_sums_kernels_and_finds_their_launching_operator():
    t = kernels.reduce_trace(trace())
    assert t["steps"] == [20]
    rows = {k["name"][:12]: k for k in t["kernels"]}
    assert rows["nvjet_tst_12"]["op"] == "aten::mm"
    assert rows["nvjet_tst_25"]["op"] == "autograd::engine::evaluate_function: _LinearBackward"
    assert t["span_us"] == 400 and t["busy_us"] == 400
    # NCCL runs 420-500; compute covers 420-450 of it: 50 us exposed.
    assert t["comm_us"] == 80 and t["comm_exposed_us"] == 50


def test_breakdown_splits_gemms_by_precision_and_accounts_for_the_span():
    t = kernels.reduce_trace(trace())
    fp8 = kernels.breakdown(t, fp8_run=True)
    assert fp8["GEMM BF16"] == pytest.approx(0.100) and fp8["GEMM FP8"] == pytest.approx(0.050)
    assert fp8["attention"] == pytest.approx(0.150)
    assert fp8["quantize / cast / amax / transpose"] == pytest.approx(0.050)
    assert fp8["communication exposed"] == pytest.approx(0.050)
    assert fp8["communication overlapped"] == pytest.approx(0.030)
    bf16 = kernels.breakdown(t, fp8_run=False)
    assert bf16["GEMM BF16"] == pytest.approx(0.150) and bf16["GEMM FP8"] == 0


@pytest.mark.parametrize("name,op,fp8_run,expected", [
    # Names as cuBLAS, cuDNN, Transformer Engine and PyTorch print them (committed kernel tables).
    ("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT", "", True, "GEMM BF16"),
    ("nvjet_sm90_qqtst_192x192_128x4_2x1_v_bz_coopB_TNN", "", True, "GEMM FP8"),
    ("nvjet_sm90_qrtst_128x160_128x5_2x1_v_bz_coopA_algo2_TNT", "", False, "GEMM FP8"),
    ("sm90_xmma_gemm_e4m3e4m3_e4m3f32_f32_tn_n_tilesize128x128x128", "", True, "GEMM FP8"),
    ("cudnn::fusion::convert_dq_to_16bits<true>(void const*)", "", False, "attention"),
    ("ln_tma_bwd_kernel", "", True, "norms"),
    ("void multi_tensor_apply_kernel<TensorListMetadata<1, false>, transformer_engine::"
     "multi_tensor_l2norm::L2NormFunctor<float>", "", False, "optimizer"),
    ("void at::native::unrolled_elementwise_kernel<at::native::CUDAFunctor_add<float>, std::array<"
     "char*, 3ul>, 4, TrivialOffsetCalculator<2, unsigned int>, at::native::memory::LoadWithCast<2>",
     "aten::add_", False, "main_grad accumulation (unfused)"),
    ("cast_transpose_optimized_kernel(__nv_bfloat16 const*, float const*, __nv_fp8_e5m2*)", "", True,
     "quantize / cast / amax / transpose"),
    ("triton_poi_fused_add_cat_mul_rsub_sigmoid_silu_split_0", "", True, "elementwise and activations"),
    ("ncclDevKernel_AllGather_RING_LL(ncclDevKernelArgsStorage<4096ul>)", "", True, "communication (NCCL)"),
])
def test_classify_real_kernel_names(name, op, fp8_run, expected):
    assert kernels.classify(name, op, fp8_run) == expected


def test_idle_time_is_the_span_without_kernels():
    tr = trace()
    tr["traceEvents"].append(_kernel("elementwise_kernel", 900, 100, 99))
    t = kernels.reduce_trace(tr)
    assert kernels.breakdown(t, False)["idle"] == pytest.approx((1000 - 100 - 500) / 1000)  # span 100-1000, busy 500


@pytest.mark.parametrize("bad", [{}, {"traceEvents": "x"}, {"traceEvents": []}, []])
def test_a_trace_without_kernels_is_a_value_error(bad):
    with pytest.raises(ValueError):
        kernels.reduce_trace(bad)


def test_cli_writes_the_table_and_rereads_it(tmp_path):
    src = tmp_path / "rank-0.json.gz"
    with gzip.open(src, "wt") as f:
        json.dump(trace(), f)
    out = tmp_path / "run.kernels.json"
    cli = [sys.executable, str(REPO_TOOLS / "profile_breakdown.py")]
    r = subprocess.run([*cli, str(src), "--fp8", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "GEMM FP8" in r.stdout and json.loads(out.read_text())["schema"] == kernels.SCHEMA
    again = subprocess.run([*cli, str(out), "--fp8"], capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout == r.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    r = subprocess.run([*cli, str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1


# --- in the report ---------------------------------------------------------------------------

BENCH = REPO_TOOLS.parent / "logs" / "h200x2_8b_bench"


def _report(inputs, out):
    import report
    assert report.main([*map(str, inputs), "--out", str(out)]) == 0
    return (out / "report.md").read_text()


def test_report_shows_each_profiled_runs_breakdown_as_a_table_and_a_plot(tmp_path, capsys):
    text = _report([BENCH], tmp_path)
    capsys.readouterr()
    section = text.split("### Where the step time goes", 1)[1].split("###", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| bench_")]
    assert len(rows) == 5
    fp8_cs = next(r for r in rows if r.startswith("| bench_llama3_8b_h200x2_fp8_cs:"))
    table = json.loads((BENCH / "bench_llama3_8b_h200x2_fp8_cs.kernels.json").read_text())
    expected = kernels.breakdown(table, fp8_run=True)
    cells = [c.strip() for c in fp8_cs.strip("|").split("|")]
    assert cells[2 + kernels.ORDER.index("GEMM FP8")] == f"{expected['GEMM FP8']:,.0f}"
    assert "(h200x2_8b_bench-breakdown.png)" in text and (tmp_path / "h200x2_8b_bench-breakdown.png").is_file()


@pytest.mark.parametrize("content", ["{", "[]", '{"schema": 99, "kernels": []}', '{"schema": 1}'])
def test_a_broken_kernel_table_is_left_out_and_the_report_still_written(tmp_path, capsys, content):
    logs = tmp_path / "logs"
    logs.mkdir()
    for name in ("bench_llama3_8b_h200x2_bf16", "bench_llama3_8b_h200x2_fp8_cs"):
        for suffix in (".log", ".meta.json"):
            (logs / f"{name}{suffix}").write_bytes((BENCH / f"{name}{suffix}").read_bytes())
    (logs / "bench_llama3_8b_h200x2_bf16.kernels.json").write_text(content)
    text = _report([logs], tmp_path / "out")
    capsys.readouterr()
    assert "### Where the step time goes" not in text

"""Published figures beside measured runs of the same model (report.py --reference)."""

import pytest

import report
from helpers import write_log

REFERENCE = """\
source: a published table
url: https://example.org/perf.html
recorded: 2026-11-23
shape: {num_layers: 32, hidden_size: 4096, seq_length: 8192}
rows:
  - {label: "pub BF16", precision: bf16, tokens_per_s_gpu: 10000}
  - {label: "pub FP8", precision: fp8, tokens_per_s_gpu: 13000}
"""
FULL = {"num_layers": 32, "hidden_size": 4096, "seq_length": 8192, "world_size": 2,
        "data_parallel_size": 2, "micro_batch_size": 1}


def study(tmp_path, shape):
    # 16 x 8192 tokens per step over 2 GPUs: 65,536 tokens per GPU; 8 s (BF16) and 5 s (FP8)
    # per step give 8,192 and 13,107.2 tokens/s/GPU.
    write_log(tmp_path / "logs" / "bf16.log", [2.0] * 10, [8000] * 10, tflops=[400.0] * 10, args=shape)
    write_log(tmp_path / "logs" / "fp8.log", [2.0] * 10, [5000] * 10, tflops=[640.0] * 10,
              args={**shape, "fp8": "hybrid", "fp8_recipe": "tensorwise"})
    ref = tmp_path / "ref.yaml"
    ref.write_text(REFERENCE)
    return ref


def test_published_rows_beside_the_same_model(tmp_path, capsys):
    ref = study(tmp_path, FULL)
    out = tmp_path / "out"
    assert report.main([str(tmp_path / "logs"), "--out", str(out), "--reference", str(ref)]) == 0
    text = (out / "report.md").read_text()
    table = text[text.index("### Beside published figures"):].split("\n\n")[1].splitlines()
    assert table[2].startswith("| bf16: BF16 (baseline) | 8,192 | 400.0 | 1.00x | 0.82x of pub BF16 |")
    assert table[3].startswith("| fp8: FP8 tensorwise (hybrid) | 13,107 | 640.0 | 1.60x | 1.01x of pub FP8 |")
    # Published TFLOP/s: Megatron's FLOPs per token measured here (400e12 / 8192) x their tokens/s.
    assert table[4] == "| pub BF16 (published) | 10,000 | 488.3 | 1.00x | – |"
    assert table[5] == "| pub FP8 (published) | 13,000 | 634.8 | 1.30x | – |"
    assert ("Published: a published table (https://example.org/perf.html, recorded 2026-11-23)."
            in text)


def test_no_published_rows_beside_a_shrunk_model(tmp_path):
    ref = study(tmp_path, {**FULL, "num_layers": 16})
    out = tmp_path / "out"
    assert report.main([str(tmp_path / "logs"), "--out", str(out), "--reference", str(ref)]) == 0
    assert "Beside published figures" not in (out / "report.md").read_text()


@pytest.mark.parametrize("text,message", [
    ("rows: []\n", "expected a mapping with source, shape and rows"),
    ("shape: {num_layers: 32}\nrows: [{precision: int4, tokens_per_s_gpu: 1}]\n", "rows[0].precision: one of bf16, fp16, fp32, fp8, fp4"),
    ("shape: {num_layers: 32}\nrows: [{precision: fp8, tokens_per_s_gpu: fast}]\n",
     "rows[0].tokens_per_s_gpu: a positive number"),
    ("shape: {num_layers: 32k}\nrows: [{precision: fp8, tokens_per_s_gpu: 1}]\n",
     "shape.num_layers: an integer, as in the arguments dump"),
    ("rows: [{precision: fp8, tokens_per_s_gpu: 1}]\n",
     "shape: name the model it is about (num_layers, hidden_size, seq_length, ...)"),
    ("shape: {num_layers: 32}\nrows: [{precision: fp8, tokens_per_s_gpu: 1}]\n",
     "url: None: the http(s) address the figures are published at"),
    ("url: docs.nvidia.com\nshape: {num_layers: 32}\nrows: [{precision: fp8, tokens_per_s_gpu: 1}]\n",
     "url: 'docs.nvidia.com': the http(s) address the figures are published at"),
    ("url: https://x.org\nshape: {num_layers: 32}\nrows: [{precision: fp8, tokens_per_s_gpu: 1}]\n",
     "recorded: None: the date (YYYY-MM-DD) the figures were copied"),
    ("url: https://x.org\nrecorded: last week\nshape: {num_layers: 32}\n"
     "rows: [{precision: fp8, tokens_per_s_gpu: 1}]\n",
     "recorded: 'last week': the date (YYYY-MM-DD) the figures were copied"),
])
def test_bad_reference_files(tmp_path, capsys, text, message):
    study(tmp_path, FULL)
    ref = tmp_path / "bad.yaml"
    ref.write_text(text)
    assert report.main([str(tmp_path / "logs"), "--out", str(tmp_path / "o"), "--reference", str(ref)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"report.py: --reference {ref}: {message}"

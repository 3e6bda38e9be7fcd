"""Studies that sweep one shape setting: FP8's speedup over BF16 by that setting (report.sweep),
drawn, captioned and stored in summary.json. Logs are Megatron 0.19 lines (helpers.write_log);
every speedup is BF16's step time over the recipe's, set by hand.
"""

from __future__ import annotations

import json

import pytest

import report
from fp8suite.report import plots
from fp8suite.report import sweep
from helpers import SHAPE, groups_of, write_log

TENSORWISE = {"fp8": "hybrid", "fp8_recipe": "tensorwise"}
DELAYED = {"fp8": "hybrid", "fp8_recipe": "delayed"}
LOSSES = [3.0] * 20


def width(hidden: int, **more) -> dict:
    """SHAPE at a hidden size, FFN 3.5 × hidden and head dim 128, as the crossover study."""
    return {**SHAPE, "hidden_size": hidden, "ffn_hidden_size": 7 * hidden // 2,
            "num_attention_heads": hidden // 128, **more}


def write_group(logs, tag: str, args: dict, bf16_ms: float, recipes: dict) -> None:
    """One BF16 run at bf16_ms and one run per recipe: {"tensorwise": ms, "delayed": ms}."""
    write_log(logs / f"{tag}_bf16.log", LOSSES, [bf16_ms] * 20, args=args)
    for name, ms in recipes.items():
        recipe = TENSORWISE if name == "tensorwise" else DELAYED
        write_log(logs / f"{tag}_{name}.log", LOSSES, [ms] * 20, args={**args, **recipe})


def render(tmp_path) -> tuple[str, dict]:
    out = tmp_path / "out"
    assert report.main([str(tmp_path / "logs"), "--out", str(out)]) == 0
    return (out / "report.md").read_text(), json.loads((out / "summary.json").read_text())


def test_a_width_sweep_draws_speedup_by_hidden_size(tmp_path):
    logs = tmp_path / "logs"
    # Tensorwise 0.8x, 1.0x, 1.25x; delayed 0.625x, 1.25x, 2.0x over BF16's 1000 ms.
    write_group(logs, "w1024", width(1024), 1000.0, {"tensorwise": 1250.0, "delayed": 1600.0})
    write_group(logs, "w2048", width(2048), 1000.0, {"tensorwise": 1000.0, "delayed": 800.0})
    write_group(logs, "w4096", width(4096), 1000.0, {"tensorwise": 800.0, "delayed": 500.0})
    text, data = render(tmp_path)

    (sw,) = data["sweeps"]
    assert (sw["study"], sw["key"], sw["values"]) == ("logs", "hidden_size", [1024, 2048, 4096])
    assert sw["fixed"] == {"num_layers": 4, "seq_length": 2048, "global_batch_size": 16,
                           "world_size": 2}
    assert sw["scaled"] == {"ffn_hidden_size": 3.5, "num_attention_heads": 128}
    assert sw["step_time_spread"] is None
    got = {(p["label"], p["value"]): p["speedup"] for p in sw["points"]}
    assert got == {
        ("FP8 tensorwise (hybrid)", 1024): pytest.approx(0.8),
        ("FP8 tensorwise (hybrid)", 2048): pytest.approx(1.0),
        ("FP8 tensorwise (hybrid)", 4096): pytest.approx(1.25),
        ("FP8 delayed (hybrid)", 1024): pytest.approx(0.625),
        ("FP8 delayed (hybrid)", 2048): pytest.approx(1.25),
        ("FP8 delayed (hybrid)", 4096): pytest.approx(2.0)}
    first = sw["points"][0]
    assert (first["runs"], first["baseline"], first["single"]) == (
        ["w1024_tensorwise"], "w1024_bf16", True)
    assert first["speedup_low"] is None and first["speedup_high"] is None

    png = tmp_path / "out" / "logs-sweep-hidden_size.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    section = text[text.index("## Sweep: FP8 speedup by hidden size (logs)"):]
    assert section.index("![FP8 speedup over BF16 by hidden size in logs]"
                         "(logs-sweep-hidden_size.png)") < section.index("\n## logs (")
    assert ("Fixed: 4 layers, FFN 3.5 × hidden, head dim 128, seq 2048, global batch 16, world "
            "size 2; a point is one FP8 recipe's speedup over its group's BF16 run at equal "
            "settings, by median step time, from one launch of the recipe and one of BF16 "
            "(no spread).") in section
    assert "| 4,096 | 1.250x | 2.000x |" in section
    # The sweep section comes before the groups, after the answer by study.
    assert text.index("## Answer by study") < text.index("## Sweep") < text.index("\n## logs (")


def test_powers_of_two_get_a_log2_axis_and_other_values_a_linear_one(tmp_path):
    logs = tmp_path / "logs"
    for layers, fp8_ms in ((4, 900.0), (6, 850.0), (8, 800.0)):
        write_group(logs, f"l{layers}", {**SHAPE, "num_layers": layers}, 1000.0,
                    {"tensorwise": fp8_ms})
    (sw,) = sweep.find(groups_of(logs))
    assert (sw.key, sw.values, sw.scaled) == ("num_layers", [4, 6, 8], [])
    assert sw.fixed_text() == ("hidden 4096, FFN 14336, 32 heads, seq 2048, global batch 16, "
                               "world size 2")
    ax = plots._sweep_figure(sw).axes[0]
    assert ax.get_xscale() == "linear"
    assert [line.get_label() for line in ax.get_lines()] == ["BF16", "FP8 tensorwise (hybrid)"]
    assert ax.get_lines()[0].get_ydata()[0] == 1.0

    logs2 = tmp_path / "pow2"
    for hidden in (1024, 2048):
        write_group(logs2, f"w{hidden}", width(hidden), 1000.0, {"tensorwise": 900.0})
    (sw,) = sweep.find(groups_of(logs2))
    assert plots._sweep_figure(sw).axes[0].get_xscale() == "log"


@pytest.mark.parametrize("second", [
    width(2048, num_layers=8),  # width and depth
    {**width(1024), "hidden_size": 2048},  # width with the FFN and heads held: three settings
    width(2048, seq_length=4096),  # width and sequence
], ids=["width-and-layers", "width-without-ffn", "width-and-seq"])
def test_groups_that_differ_in_two_settings_form_no_sweep(tmp_path, second):
    logs = tmp_path / "logs"
    write_group(logs, "a", width(1024), 1000.0, {"tensorwise": 900.0})
    write_group(logs, "b", second, 1000.0, {"tensorwise": 800.0})
    assert len(groups_of(logs)) == 2
    assert sweep.find(groups_of(logs)) == []
    text, data = render(tmp_path)
    assert data["sweeps"] == []
    assert "Sweep" not in text
    assert not list((tmp_path / "out").glob("*sweep*"))


def test_studies_in_other_folders_do_not_sweep_together(tmp_path):
    write_group(tmp_path / "logs" / "one", "w1024", width(1024), 1000.0, {"tensorwise": 900.0})
    write_group(tmp_path / "logs" / "two", "w2048", width(2048), 1000.0, {"tensorwise": 800.0})
    assert sweep.find(groups_of(tmp_path / "logs")) == []


def test_several_seeds_give_their_mean_and_range(tmp_path):
    logs = tmp_path / "logs"
    write_group(logs, "w1024", width(1024), 1000.0, {"tensorwise": 1000.0})
    write_group(logs, "w2048", width(2048), 1000.0, {})
    for seed, ms in ((1, 800.0), (2, 500.0)):  # 1.25x and 2.0x
        write_log(logs / f"w2048_tensorwise_s{seed}.log", LOSSES, [ms] * 20,
                  args={**width(2048), **TENSORWISE, "seed": seed})
    (sw,) = sweep.find(groups_of(logs))
    p = next(p for p in sw.points if p.value == 2048)
    assert (p.speedup, p.speedup_low, p.speedup_high) == pytest.approx((1.625, 1.25, 2.0))
    assert p.runs == ["w2048_tensorwise_s1", "w2048_tensorwise_s2"] and not p.single
    assert sweep.caption(sw).endswith(
        "a point of several runs is their mean, its bar their range; step-time spread up to "
        "±60.0%.")  # the two seeds' step times: 800 and 500 ms
    text, _ = render(tmp_path)
    assert "| 2,048 | 1.625x (1.250–2.000x, 2 runs) |" in text


def test_a_group_without_a_bf16_baseline_gives_no_points_and_one_value_no_sweep(tmp_path):
    logs = tmp_path / "logs"
    write_group(logs, "w1024", width(1024), 1000.0, {"tensorwise": 900.0})
    write_log(logs / "w2048_tensorwise.log", LOSSES, [800.0] * 20,
              args={**width(2048), **TENSORWISE})
    assert sweep.find(groups_of(logs)) == []


def test_a_run_at_other_settings_than_its_baseline_is_no_point(tmp_path):
    logs = tmp_path / "logs"
    write_group(logs, "w1024", width(1024), 1000.0, {"tensorwise": 900.0})
    write_group(logs, "w2048", width(2048), 1000.0, {"tensorwise": 800.0})
    write_log(logs / "w2048_delayed_mbs4.log", LOSSES, [400.0] * 20,
              args={**width(2048), **DELAYED, "micro_batch_size": 4})
    (sw,) = sweep.find(groups_of(logs))
    assert sw.labels == ["FP8 tensorwise (hybrid)"]

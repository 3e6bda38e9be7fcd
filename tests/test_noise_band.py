"""The seed-to-seed noise band from 1, 2, 3 or 4 BF16 seeds.

band = max over the k-1 other BF16 seeds of |mean gap to the baseline| (the lowest seed), the
same statistic, window and baseline as each FP8 run's mean gap. Logs are Megatron 0.19 lines
(test_report_metrics.write_log); each BF16 seed's loss is the baseline's plus a constant, so its
mean gap is that constant.
"""

from __future__ import annotations

import json
import math
import random

import pytest

import report
from fp8suite.report import compare
from helpers import SHAPE, groups_of, write_log

N = 120  # iterations: over MIN_ITERATIONS_FOR_LOSS, so loss comparisons are meaningful
BASE = [4.0 - 0.01 * i for i in range(1, N + 1)]
FP8 = {"fp8": "hybrid", "fp8_recipe": "tensorwise"}
SEEDS = [1234, 2345, 3456, 4567]


def study(root, offsets: list, extra_failed: bool = False):
    """BF16 seeds SEEDS[0] (the baseline, offset 0) and SEEDS[1:] with `offsets`; an FP8 run at
    exactly the widest seed's losses (on the band) and one just past it."""
    write_log(root / "bf16_s1234.log", BASE, [1000] * N, args={**SHAPE, "seed": SEEDS[0]})
    for seed, c in zip(SEEDS[1:], offsets):
        write_log(root / f"bf16_s{seed}.log", [v + c for v in BASE], [1000] * N,
                  args={**SHAPE, "seed": seed})
    widest = max(offsets, key=abs) if offsets else 0.0
    write_log(root / "fp8_on_band.log", [v + widest for v in BASE], [900] * N,
              args={**SHAPE, **FP8, "seed": SEEDS[0]})
    past = widest + math.copysign(2e-4, widest or 1.0)
    write_log(root / "fp8_past_band.log", [v + past for v in BASE], [900] * N,
              args={**SHAPE, **FP8, "seed": SEEDS[0]})
    if extra_failed:
        # A crashed and a diverged BF16 seed, far off: failed runs are never noise references.
        crash = ("[rank0]: Traceback (most recent call last):\n"
                 "[rank0]:   File \"/workspace/pretrain_entry.py\", line 57, in <module>\n"
                 "[rank0]: torch.OutOfMemoryError: CUDA out of memory.\n")
        write_log(root / "bf16_s9001.log", [v + 0.5 for v in BASE[:110]], [1000] * 110,
                  args={**SHAPE, "seed": 9001, "train_iters": N}, end=crash)
        write_log(root / "bf16_s9002.log", [v - 0.5 for v in BASE[:100]] + [math.nan] * 20,
                  [1000] * N, args={**SHAPE, "seed": 9002})
    return widest, past


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("failed", [False, True])
def test_band_is_the_largest_gap_of_the_other_seeds(tmp_path, k, failed):
    rng = random.Random(k * 10 + failed)
    offsets = [round(rng.choice([-1, 1]) * rng.uniform(0.005, 0.05), 4) for _ in range(k - 1)]
    widest, past = study(tmp_path, offsets, failed)
    (g,) = groups_of(tmp_path)
    assert g.baseline == "bf16_s1234"
    refs = {f"bf16_s{s}": c for s, c in zip(SEEDS[1:], offsets)}
    assert set(g.noise_gaps) == set(refs)
    for name, c in refs.items():
        assert g.noise_gaps[name].mean == pytest.approx(c, abs=1e-6)
        assert g.versus[name].verdict == "noise reference"
    if k == 1:
        assert g.band is None and g.seeds == 0
        assert g.versus["fp8_on_band"].verdict == ""
        return
    assert g.seeds == k
    assert g.band == pytest.approx(abs(widest), abs=1e-6)
    assert g.band == max(abs(gap.mean) for gap in g.noise_gaps.values())
    assert g.noise_run == max(refs, key=lambda n: abs(refs[n]))
    # The FP8 run on the widest seed's losses has bit for bit that seed's gap: on the band,
    # within it. Just past it, outside.
    assert g.versus["fp8_on_band"].gap.mean == g.noise.mean
    assert g.versus["fp8_on_band"].verdict == "within noise"
    assert g.versus["fp8_past_band"].verdict.startswith("outside noise (")
    if failed:
        for name in ("bf16_s9001", "bf16_s9002"):
            assert name not in g.noise_gaps and g.versus[name].invalid


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_report_words_for_k_seeds(tmp_path, k):
    offsets = [0.02, -0.03, 0.01][:k - 1]
    study(tmp_path / "logs", offsets, extra_failed=True)
    out = tmp_path / "out"
    assert report.main([str(tmp_path / "logs"), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    data = json.loads((out / "summary.json").read_text())
    cmp = {c["run"]: c for c in data["comparisons"]}
    rule = "With k BF16 seeds, the band is the largest \\|mean gap\\| of the k − 1 other seeds"
    foot = "*vs noise*: band = max over the k − 1 other BF16 seeds of \\|mean gap to the baseline\\|"
    if k == 1:
        assert "Seed-to-seed noise: unknown" in text and cmp["fp8_on_band"]["noise_band"] is None
        assert rule not in text and foot not in text
        return
    band = max(abs(c) for c in offsets)
    assert all(c["noise_band"] == pytest.approx(band, abs=1e-6) for c in cmp.values())
    refs = [f"bf16_s{s}" for s in SEEDS[1:k]]
    assert [r for r, c in cmp.items() if c["verdict"] == "noise reference"] == refs
    assert cmp["fp8_on_band"]["verdict"] == "within noise"
    assert cmp["fp8_past_band"]["verdict"] == "outside noise (+0.0002)" or \
        cmp["fp8_past_band"]["verdict"] == "outside noise (-0.0002)"
    assert cmp["bf16_s9001"]["valid"] is False and cmp["bf16_s9001"]["verdict"] is None
    for r in refs:  # each seed's gap is a row of the table, marked as a noise reference
        assert any(line.startswith(f"| {r}: BF16") and "| noise reference |" in line
                   for line in text.splitlines())
    if k == 2:
        # Two seeds read as before: one pair, no rule for k.
        assert ("Seed-to-seed noise: bf16_s2345 vs bf16_s1234 differ by +0.0200 on average "
                "(the noise band: ±0.0200)") in text
        assert rule not in text and foot not in text
    else:
        assert rule in text
        assert f"{foot} (k = {k} here): ±{band:.4f}, from bf16_s3456" in text
        each = ", ".join(f"bf16_s{s} {c:+.4f}" for s, c in zip(SEEDS[1:], offsets))
        assert (f"Seed-to-seed noise: {k - 1} other BF16 seeds vs bf16_s1234 differ on average "
                f"by {each}; the noise band is the largest \\|mean gap\\|: ±{band:.4f} "
                f"(bf16_s3456") in text
    # The sentences in words leave every noise reference out.
    words = text[text.index("In words"):]
    assert not any(f"({r})" in words for r in refs)


@pytest.mark.parametrize("band", [0.0, 1e-12, 0.0123, 0.5, 3.0])
def test_the_verdict_flips_exactly_at_the_band(band):
    above = math.nextafter(band, math.inf)
    assert compare.verdict(band, band) == "within noise"
    assert compare.verdict(-band, band) == "within noise"
    assert compare.verdict(above, band).startswith("outside noise (+")
    assert compare.verdict(-above, band).startswith("outside noise (-")


@pytest.mark.parametrize("k", [2, 3, 4])
def test_the_loss_gap_plot_draws_the_band(tmp_path, k):
    from fp8suite.report import plots
    offsets = [0.02, -0.03, 0.01][:k - 1]
    study(tmp_path, offsets)
    (g,) = groups_of(tmp_path)
    fig = plots._gap_figure(g, plots._gap_series(g))
    (ax,) = fig.axes
    labels = ax.get_legend_handles_labels()[1]
    band = next(label for label in labels if label.startswith("seed-to-seed noise band"))
    widest = "bf16_s2345" if k == 2 else "bf16_s3456"
    assert band == (f"seed-to-seed noise band (±{max(map(abs, offsets)):.4f}, {widest})"
                    if k == 2 else
                    f"seed-to-seed noise band (±0.0300, the largest of {k - 1} other BF16 "
                    f"seeds: {widest})")
    span = next(p for p in ax.patches if p.get_label() == band)
    # A Rectangle (matplotlib >= 3.9) or a Polygon (older) spanning -band..band.
    ys = ([span.get_y(), span.get_y() + span.get_height()] if hasattr(span, "get_height")
          else [y for _, y in span.get_xy()])
    assert min(ys) == pytest.approx(-g.band) and max(ys) == pytest.approx(g.band)

"""The documentation stays true to the committed results and to itself.

- Every figure in a table of docs/results/<page>.md is one that the study's report made: it
  appears in `assets/<study>/report.md` or `summary.json` of a report the page links to, so a
  figure copied by hand cannot go stale when the logs or the report code change.
- Every relative link in README.md and docs/ resolves (anchors included).
- README.md stays short.

Figures are read generically, whatever the report's formatting: thousands separators and
trailing zeros do not count, a sign written as a word ("lower by 0.062") matches -0.062, and a
figure rounded in the docs matches the unrounded value (4,860 ms matches 4860.3).
"""

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import REPO

def generated(page: Path) -> bool:
    """A page a tool writes whole ("Rebuilt by `python tools/...`" on its third line), such as the
    predictor's error table: its figures are computed, not copied, and its own test rebuilds it."""
    lines = page.read_text().splitlines()
    return len(lines) > 2 and lines[2].startswith("Rebuilt by `python tools/")


RESULTS = sorted(p for p in (REPO / "docs" / "results").glob("*.md") if not generated(p))
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]

# Doc pages other engineers are adding in parallel branches; links to them may dangle until
# those branches land.
PENDING_PAGES = {
    "docs/log-formats.md", "docs/reading-a-report.md", "docs/slurm-and-faults.md",
    "docs/hardening.md", "docs/preflight.md",
}

README_LIMIT_BYTES = 10 * 1024

# A figure: digits with optional thousands separators and decimals, and an optional magnitude
# suffix (k, M) or percent sign. It must not be glued to a letter or digit on its left (H200,
# FP8, s1234 are names, not figures).
FIGURE = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?:\s?([kM%])(?![A-Za-z]))?")
SCALE = {"k": Decimal(1000), "M": Decimal(1000000), "%": Decimal(1), None: Decimal(1)}
CODE_SPAN = re.compile(r"`[^`]*`")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def figures(text):
    """(value, decimals, suffix) of every figure in `text`, code spans left out; value is a
    Decimal, without its sign (signs are words as often as symbols)."""
    found = []
    for m in FIGURE.finditer(CODE_SPAN.sub(" ", text)):
        whole, frac, suffix = m.group(1), m.group(2) or "", m.group(3)
        found.append((Decimal(whole.replace(",", "") + frac), len(frac) - 1 if frac else 0, suffix))
    return found


SEPARATOR = re.compile(r"\|(\s*:?-+:?\s*\|)+")


def table_rows(text):
    """The body cells of every markdown table in `text`: header and separator rows and the
    label column (the first) left out."""
    lines = [line.strip() for line in text.splitlines()]
    rows = []
    for at, line in enumerate(lines):
        if not line.startswith("|") or SEPARATOR.fullmatch(line):
            continue
        if at + 1 < len(lines) and SEPARATOR.fullmatch(lines[at + 1]):
            continue  # a header row
        rows.append([c.strip() for c in line.strip("|").split("|")][1:])
    return rows


def source_values(study_dir):
    """Every number the study's report states: the figures of report.md and every number of
    summary.json (in full precision), as Decimals without sign."""
    report_figures = figures((study_dir / "report.md").read_text())
    values = {v for v, _, _ in report_figures} | {v * SCALE[s] for v, _, s in report_figures}

    def walk(node):
        if isinstance(node, bool) or node is None:
            return
        if isinstance(node, (int, float)):
            values.add(abs(Decimal(repr(node))))
        elif isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, str):
            values.update(abs(v) for v, _, _ in figures(node))

    summary = study_dir / "summary.json"
    if summary.is_file():
        walk(json.loads(summary.read_text()))
    return values


def appears(value, decimals, suffix, sources):
    """True when some source value, written with `decimals` decimals, is `value` (scaled by its
    k/M suffix; a percentage may also be a fraction in the source: 50.2% matches 0.502)."""
    half = Decimal(5) * Decimal(10) ** (-decimals - 1) + Decimal("1e-9")
    candidates = [(value * SCALE[suffix], half * SCALE[suffix])]
    if suffix == "%":
        candidates.append((value / 100, half / 100))
    return any(abs(s - wanted) <= tolerance for wanted, tolerance in candidates for s in sources)


def linked_studies(page):
    """The assets/<study>/ folders whose report.md the page links to."""
    studies = []
    for target in (a or b for a, b in LINK.findall(page.read_text())):
        path = (page.parent / target.split("#")[0]).resolve()
        if path.name == "report.md" and path.parent.parent == (REPO / "assets").resolve():
            studies.append(path.parent)
    return studies


def stale_figures(page):
    """'cell: figure' for each table figure of `page` that its studies' reports do not state."""
    studies = linked_studies(page)
    sources = set().union(*(source_values(s) for s in studies)) if studies else set()
    missing = []
    for cells in table_rows(page.read_text()):
        for cell in cells:
            for value, decimals, suffix in figures(cell):
                if not appears(value, decimals, suffix, sources):
                    missing.append(f"{cell!r}: {value}{suffix or ''}")
    return missing


def test_results_pages_exist_and_each_links_its_report():
    assert RESULTS, "docs/results/ has no pages"
    for page in RESULTS:
        studies = linked_studies(page)
        assert studies, f"{page.relative_to(REPO)} links no assets/<study>/report.md"
        for study in studies:
            assert (study / "report.md").is_file(), f"{page.relative_to(REPO)}: {study} has no report"


@pytest.mark.parametrize("page", RESULTS, ids=[p.name for p in RESULTS])
def test_every_table_figure_is_in_the_study_report(page):
    assert table_rows(page.read_text()), f"{page.relative_to(REPO)} has no table"
    missing = stale_figures(page)
    assert not missing, (f"{page.relative_to(REPO)}: figures not in the linked report or summary.json "
                         "(rebuild the report, then copy its figures): " + "; ".join(missing))


def test_a_figure_the_report_does_not_state_is_caught(tmp_path):
    """The check can fail: a changed figure, and a figure from another study, are both found."""
    study = REPO / "assets" / "h200x2_8b_bench"
    page = tmp_path / "page.md"
    link = f"[report]({study / 'report.md'})\n\n"
    table = "| Recipe | Step time | Speedup | MFU | Tokens |\n|---|---|---|---|---|\n"
    page.write_text(link + table + "| BF16 | 6,798 ms | 1.00x | 50.2% | 917.50k |\n")
    assert stale_figures(page) == []
    page.write_text(link + table + "| BF16 | 6,799 ms | 1.00x | 50.2% | 917.50k |\n")
    assert stale_figures(page) == ["'6,799 ms': 6799"]
    page.write_text(link + table + "| BF16 | 6,798 ms | 1.00x | 50.2% | 4,547 |\n")  # an ablation figure
    assert stale_figures(page) == ["'4,547': 4547"]


def test_figures_are_read_whatever_their_formatting():
    assert figures("6,798 ms, 1.40x, −0.0539, 8.11M, 50.2%, H200, FP8, `s1234`") == [
        (Decimal("6798"), 0, None), (Decimal("1.40"), 2, None), (Decimal("0.0539"), 4, None),
        (Decimal("8.11"), 2, "M"), (Decimal("50.2"), 1, "%")]
    sources = {Decimal("4860.3"), Decimal("8110000"), Decimal("0.502"), Decimal("1.3950")}
    assert appears(Decimal("4860"), 0, None, sources)          # rounded in the docs
    assert appears(Decimal("1.395"), 3, None, sources)         # trailing zero in the source
    assert appears(Decimal("1.40"), 2, None, sources)
    assert appears(Decimal("8.11"), 2, "M", sources)
    assert appears(Decimal("50.2"), 1, "%", sources)           # a fraction shown as percent
    assert not appears(Decimal("4861"), 0, None, sources)
    assert not appears(Decimal("1.41"), 2, None, sources)


def relative_links(path):
    text = CODE_SPAN.sub(" ", re.sub(r"```.*?```", " ", path.read_text(), flags=re.S))
    for a, b in LINK.findall(text):
        target = a or b
        if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            yield target


def anchors(path):
    """GitHub's anchors of a markdown file's headings."""
    found = set()
    for line in path.read_text().splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            found.add(slug)
    return found


@pytest.mark.parametrize("doc", DOCS, ids=[str(p.relative_to(REPO)) for p in DOCS])
def test_every_relative_link_resolves(doc):
    broken = []
    for target in relative_links(doc):
        file_part, _, anchor = target.partition("#")
        path = (doc.parent / file_part).resolve() if file_part else doc
        rel = path.relative_to(REPO.resolve()).as_posix() if path.is_relative_to(REPO.resolve()) else str(path)
        if rel in PENDING_PAGES and not path.exists():
            continue
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(target)
    assert not broken, f"{doc.relative_to(REPO)}: links that do not resolve: {broken}"


def test_a_broken_link_is_caught(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("# Title\n[ok](x.md#title) [gone](nowhere.md) [bad anchor](x.md#nope) "
                   "[web](https://example.com) `[code](not-a-link.md)`\n")
    assert list(relative_links(doc)) == ["x.md#title", "nowhere.md", "x.md#nope"]
    assert "title" in anchors(doc) and "nope" not in anchors(doc)


def test_readme_is_at_most_10_kb():
    size = (REPO / "README.md").stat().st_size
    assert size <= README_LIMIT_BYTES, f"README.md is {size} bytes; move reference material to docs/"


def test_the_matrix_reference_names_every_field():
    """docs/matrix.md has a row for every suite setting of tools/fp8suite/config/schema.py."""
    import dataclasses

    from fp8suite.config import schema

    text = (REPO / "docs" / "matrix.md").read_text()
    sections = {"target": schema.Target, "data": schema.Data, "wandb": schema.Wandb,
                "checkpoint": schema.Checkpoint, "slurm": schema.Slurm}
    keys = [f.name for f in dataclasses.fields(schema.Matrix)]
    for f in dataclasses.fields(schema.Settings):
        if f.name in sections:
            keys += [f"{f.name}.{g.name}" for g in dataclasses.fields(sections[f.name])]
        else:
            keys.append(f.name)
    missing = [k for k in keys if f"| `{k}` |" not in text]
    assert not missing, f"docs/matrix.md has no row for {missing}"


def test_the_readme_answers_a_newcomers_four_questions():
    """From README.md alone: which recipe for Llama-3-8B on H200 and how much faster (a headline
    table and a recommendation), how to add a model, how to run two Slurm nodes, how to resume."""
    text = (REPO / "README.md").read_text()
    headline = re.search(r"^## Llama-3-8B on H200.*?(?=^## )", text, re.S | re.M)
    assert headline, "README.md has no Llama-3-8B on H200 section"
    assert table_rows(headline.group(0)) and "**Recommendation:**" in headline.group(0)
    assert "--fp8-param-gather" in headline.group(0), "the recommendation states the known caveat"
    links = set(relative_links(REPO / "README.md"))
    for target in ("docs/howto-own-model.md", "docs/howto-slurm-two-nodes.md",
                   "docs/running.md#resume-after-a-time-limit"):
        assert target in links, f"README.md does not link {target}"


@pytest.mark.parametrize("matrix", sorted((REPO / "experiments" / "examples").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_the_documented_example_matrices_render(matrix, tmp_path, capsys):
    """The how-tos' example matrices pass the pre-flight (render exits 0 and writes scripts)."""
    import render

    assert render.main([str(matrix), "--out", str(tmp_path)]) == 0, capsys.readouterr().err
    assert sorted(p.suffix for p in tmp_path.iterdir()).count(".sbatch") >= 1


# --- the speedup predictor's figures -------------------------------------------------------------
# Prose quoting the predictor's validation ("42 pairs, 38 within 10%, median |error| 2.9%") is
# checked against tools/fp8suite/data/predictor.json, which predict_speedup.py writes: a figure
# copied by hand goes stale when the logs or the model change, and this catches it.

PREDICTOR_FIGURES = (
    (re.compile(r"\b(\d+) (?:committed )?pairs\b"), lambda c: c["validation"]["pairs"]),
    (re.compile(r"\b(\d+) within 10%|within 10%: (\d+)"), lambda c: c["validation"]["within_target"]),
    (re.compile(r"median \|error\| ([\d.]+)%"), lambda c: round(c["validation"]["median_abs_error"] * 100, 1)),
    (re.compile(r"±([\d.]+)%"), lambda c: round(c["validation"]["band_abs_error"] * 100, 1)),
    (re.compile(r"worst(?: off by)? ([\d.]+)%"), lambda c: round(c["validation"]["worst_abs_error"] * 100, 1)),
    (re.compile(r"calibrated on (\d+) (?:committed|H\d+|[A-Z0-9/]+) logs"), lambda c: len(c["logs"])),
)
"""Each pattern of a predictor figure in prose, and the predictor.json value it must equal."""


def predictor_paragraphs(text: str) -> list[str]:
    """The paragraphs (and code blocks) of a page that speak of the predictor."""
    return [p for p in re.split(r"\n\s*\n", text)
            if re.search(r"predict|leave-one-out|committed pairs", p, re.IGNORECASE)]


def predictor_figure_problems(text: str, calibration: dict) -> list[str]:
    out = []
    for paragraph in predictor_paragraphs(text):
        flat = " ".join(paragraph.split())
        for pattern, expected in PREDICTOR_FIGURES:
            want = expected(calibration)
            for match in pattern.finditer(flat):
                got = next(g for g in match.groups() if g is not None)
                if Decimal(got) != Decimal(str(want)):
                    out.append(f"{match.group(0)!r}: predictor.json says {want}")
    return out


PREDICTOR_DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("**/*.md")])


@pytest.mark.parametrize("doc", PREDICTOR_DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_predictor_figures_in_docs_match_its_validation(doc):
    calibration = json.loads((REPO / "tools" / "fp8suite" / "data" / "predictor.json").read_text())
    problems = predictor_figure_problems(doc.read_text(), calibration)
    assert not problems, (f"{doc.relative_to(REPO)}: " + "; ".join(problems)
                          + " (re-run the commands of docs/preflight.md, then copy its figures)")


def test_a_stale_predictor_figure_is_caught():
    calibration = json.loads((REPO / "tools" / "fp8suite" / "data" / "predictor.json").read_text())
    v = calibration["validation"]
    good = (f"The predictor's current result: {v['pairs']} pairs, {v['within_target']} within 10%, "
            f"median |error| {v['median_abs_error'] * 100:.1f}%.")
    assert predictor_figure_problems(good, calibration) == []
    stale = good.replace(f"{v['within_target']} within", f"{v['within_target'] + 1} within")
    assert predictor_figure_problems(stale, calibration) == [
        f"'{v['within_target'] + 1} within 10%': predictor.json says {v['within_target']}"]

"""Every command-line tool in tools/*.py answers --help alike: exit 0, a usage line, and an
"exit status:" section that names every status the tool's own code returns; verify_env.py and
render take FP8/FP4 recipes from the one registry (fp8suite/megatron/recipes.py)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from conftest import REPO

TOOLS = sorted((REPO / "tools").glob("*.py"))
ARGPARSE_USAGE = 2
"""argparse's status for bad usage: every tool that parses options can exit with it."""


def help_text(tool) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(tool), "--help"], capture_output=True, text=True, timeout=120)


def documented_statuses(text: str) -> set[int]:
    """The statuses an "exit status:" paragraph names ("0 written, 1 ..., 2 bad input (143 ...)")."""
    section = text[text.index("exit status:") + len("exit status:"):].split("\n\n")[0]
    flat = " ".join(section.split())
    return {int(m) for m in re.findall(r"(?:^|, |\()(\d+) ", flat)}


def returned_statuses(source: str) -> set[int]:
    """The statuses a tool's own code returns or exits with (a message to sys.exit is 1)."""
    found = {int(m) for m in re.findall(r"\b(?:return|sys\.exit\(|else) (\d+)\b", source)}
    if re.search(r"sys\.exit\(f?[\"']", source):
        found.add(1)
    return found


@pytest.mark.parametrize("tool", TOOLS, ids=lambda p: p.name)
def test_help_has_usage_and_exit_statuses_that_match_the_code(tool):
    out = help_text(tool)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: "), out.stdout[:200]
    assert "exit status:" in out.stdout, f"{tool.name} --help documents no exit status"
    documented = documented_statuses(out.stdout)
    assert 0 in documented and ARGPARSE_USAGE in documented, documented
    missing = returned_statuses(tool.read_text()) - documented
    assert not missing, f"{tool.name} returns {sorted(missing)} but its help documents {sorted(documented)}"


def test_the_status_parsers_read_what_they_should():
    assert documented_statuses("exit status: 0 ok, 1 failed (a write), 2 bad usage, 130 stopped (143 by SIGTERM)\n\n"
                               "more 5 text") == {0, 1, 2, 130, 143}
    assert returned_statuses("    return 0\n    return 1 if x else 0\n    sys.exit(f'no')\n") == {0, 1}


def test_megatron_check_documents_exit_2_when_megatron_is_missing():
    """The fault that prompted these tests: exit 2 without megatron-core, its help said 0 or 1."""
    out = help_text(REPO / "tools" / "megatron_check.py")
    assert {0, 1, 2} <= documented_statuses(out.stdout)
    assert "not importable" in " ".join(out.stdout.split("exit status:")[1].split())


def test_verify_env_and_render_take_recipes_from_the_registry():
    import verify_env
    from fp8suite.megatron import recipes

    captured = {}
    real = argparse.ArgumentParser.parse_args

    def capture(self, *args, **kwargs):
        captured["parser"] = self
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = capture
    try:
        with pytest.raises(SystemExit):
            verify_env.main([])
    finally:
        argparse.ArgumentParser.parse_args = real
    action = next(a for a in captured["parser"]._actions if "--recipe" in a.option_strings)
    parser_choices = tuple(action.choices)
    assert parser_choices == recipes.names()
    # Every name verify_env takes is a recipe a matrix selects (render's check accepts its flags)
    # and every quantized recipe render accepts is a name verify_env takes.
    for recipe in recipes.quantized():
        assert recipes.find(recipe.format_flag, recipe.recipe_value) is recipe
        assert recipe.name in parser_choices
    assert {"nvfp4", "fp8_custom", "fp4_custom"} <= set(parser_choices)

"""tools/snapshot_megatron_flags.py on a stand-in megatron-core: the flag snapshot, and the
assertion list refreshed from the installed source with the committed reviews carried over."""

from __future__ import annotations

import json
import sys

import pytest

import snapshot_megatron_flags as tool
from fp8suite.megatron import assertions as ma

REVIEWED = {e["rule"]: e for e in ma.load("0.19.2")["assertions"] if e["status"] == "ported"}
CE = REVIEWED["cross-entropy-fusion-te"]


def _package(root):
    files = {
        "megatron/__init__.py": "",
        "megatron/core/__init__.py": "__version__ = '0.19.2'\n",
        "megatron/training/__init__.py": "",
        "megatron/training/arguments.py": (
            "def add_megatron_arguments(parser):\n"
            "    parser.add_argument('--cross-entropy-loss-fusion', action='store_true')\n"
            "    parser.add_argument('--cross-entropy-fusion-impl', choices=['native', 'te'], default='native')\n"
            "    return parser\n\n\n"
            "def validate_args(args, defaults={}):\n"
            f"    assert {CE['condition']}, {CE['message']}\n"
            "    assert args.new_flag, 'a check this list has not seen'\n"),
        "megatron/core/transformer/transformer_config.py": (
            "class TransformerConfig:\n    def __post_init__(self):\n        pass\n\n\n"
            "class MLATransformerConfig(TransformerConfig):\n    def __post_init__(self):\n        pass\n"),
        "megatron/core/model_parallel_config.py": "class ModelParallelConfig:\n    def __post_init__(self):\n        pass\n",
        "megatron/core/optimizer/optimizer_config.py": "class OptimizerConfig:\n    def __post_init__(self):\n        pass\n",
        "megatron/core/distributed/distributed_data_parallel_config.py":
            "class DistributedDataParallelConfig:\n    def __post_init__(self):\n        pass\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def standin(tmp_path, monkeypatch):
    site = tmp_path / "site"
    _package(site)
    monkeypatch.syspath_prepend(str(site))
    for name in [m for m in sys.modules if m == "megatron" or m.startswith("megatron.")]:
        monkeypatch.delitem(sys.modules, name)
    yield site
    for name in [m for m in sys.modules if m == "megatron" or m.startswith("megatron.")]:
        del sys.modules[name]


def test_snapshot_refreshes_the_assertion_list_beside_it(standin, tmp_path, capsys):
    out = tmp_path / "out" / "megatron_flags_0.19.2.json"
    assert tool.main(["--out", str(out)]) == 0
    flags = json.loads(out.read_text())["flags"]
    assert flags["--cross-entropy-fusion-impl"]["choices"] == ["native", "te"]
    listed = json.loads((out.parent / "megatron_assertions_0.19.2.json").read_text())["assertions"]
    assert [(e["status"], e["rule"]) for e in listed] == [("ported", "cross-entropy-fusion-te"), ("unreviewed", None)]
    assert "2 assertions, 1 new" in capsys.readouterr().out


def test_a_missing_source_function_is_one_line(standin, tmp_path, capsys):
    (standin / "megatron/core/model_parallel_config.py").write_text("class ModelParallelConfig:\n    pass\n")
    assert tool.main(["--out", str(tmp_path / "flags.json")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no function ModelParallelConfig.__post_init__" in err[0]

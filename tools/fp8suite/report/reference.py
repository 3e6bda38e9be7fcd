"""Published throughput figures to show beside measured runs of the same model.

A reference file (YAML) names its source, the model shape it is about, and one row per
published configuration:

    source: NVIDIA's published Llama-3-8B training performance (8x H100, seq 8192)
    url: https://docs.nvidia.com/...        # where the figures are published
    recorded: 2026-11-23                    # the date they were copied from there
    shape: {num_layers: 32, hidden_size: 4096, seq_length: 8192}
    rows:
      - {label: "NVIDIA BF16", precision: bf16, tokens_per_s_gpu: 10682}
      - {label: "NVIDIA FP8 tensorwise", precision: fp8, tokens_per_s_gpu: 14451}

The report shows the rows only for comparison groups whose arguments match `shape`: a
shrunk model next to a full-size published figure would mislead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Optional

from ..config import loader
from ..megatron import recipes
from ..common.errors import ConfigError, UsageError
from ..logs.parse import arg_int

PRECISIONS = recipes.PRECISIONS


@dataclass(frozen=True)
class Row:
    label: str
    precision: str
    tokens_per_s_gpu: float


@dataclass(frozen=True)
class Reference:
    source: str
    shape: dict
    rows: tuple
    url: str = ""  # where the figures are published (http/https)
    recorded: str = ""  # the date (YYYY-MM-DD) they were copied from there


def load(path: Optional[str]) -> Optional[Reference]:
    """The reference file, or None without one; UsageError names what is wrong with it."""
    if path is None:
        return None
    try:
        # The suite's one YAML reader: a FIFO or huge file refused, every PyYAML error one line.
        data = loader.read_yaml(Path(path), f"--reference {path}")
    except ConfigError as err:
        raise UsageError(*(str(p) for p in err.problems)) from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or not data["rows"]:
        raise UsageError(f"--reference {path}: expected a mapping with source, shape and rows")
    if not isinstance(data.get("shape"), dict) or not data["shape"]:
        raise UsageError(f"--reference {path}: shape: name the model it is about "
                         "(num_layers, hidden_size, seq_length, ...)")
    for key, value in data["shape"].items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"--reference {path}: shape.{key}: an integer, as in the arguments dump")
    rows = []
    for i, row in enumerate(data["rows"]):
        where = f"--reference {path}: rows[{i}]"
        if not isinstance(row, dict):
            raise UsageError(f"{where}: expected a mapping")
        if row.get("precision") not in PRECISIONS:
            raise UsageError(f"{where}.precision: one of {', '.join(PRECISIONS)}")
        value = row.get("tokens_per_s_gpu")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise UsageError(f"{where}.tokens_per_s_gpu: a positive number")
        rows.append(Row(str(row.get("label") or f"published {row['precision']}"),
                        row["precision"], float(value)))
    url, recorded = data.get("url"), data.get("recorded")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise UsageError(f"--reference {path}: url: {url!r}: the http(s) address the figures "
                         "are published at")
    if isinstance(recorded, (date, datetime)):
        recorded = recorded.isoformat()[:10]
    if not isinstance(recorded, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", recorded):
        raise UsageError(f"--reference {path}: recorded: {recorded!r}: the date (YYYY-MM-DD) "
                         "the figures were copied")
    return Reference(str(data.get("source", path)), dict(data["shape"]), tuple(rows), url,
                     recorded)


def matches(reference: Reference, group) -> bool:
    """Whether every run of the group with arguments has the reference's model shape."""
    with_args = [r for r in group.runs if r.log.args]
    return bool(with_args) and all(
        arg_int(r.log.args, key) == value
        for r in with_args for key, value in reference.shape.items())

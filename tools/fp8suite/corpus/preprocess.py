"""JSONL documents -> token ids -> Megatron's indexed dataset (<prefix>_text_document.bin/.idx).

    JSONL lines -> (line number, text), malformed lines counted -> token ids + end-of-document id
    -> megatron.core.datasets.indexed_dataset.IndexedDatasetBuilder

The tokenizer is a HuggingFace tokenizer directory, loaded the way Megatron's `--tokenizer-type
HuggingFaceTokenizer --tokenizer-model DIR` loads it (transformers.AutoTokenizer), so the
end-of-document id written here is the `eod` Megatron uses at training time. `train_tokenizer`
makes such a directory: a byte-level BPE (GPT-2 style: no unknown tokens, lossless round trip).

megatron-core (Python >= 3.12), transformers and tokenizers are imported only where needed: the
pure parts here run and are tested on any Python without them.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol, TextIO

from ..common import fileio
from ..common.errors import PreprocessError

EOD_TOKEN = "<|endoftext|>"
"""End of document (also BOS, as in GPT-2); Megatron's `tokenizer.eod` resolves to its id."""
PAD_TOKEN = "<|pad|>"
"""A pad distinct from EOD: Megatron warns and stops masking pads when the two collide."""


# --------------------------------------------------------------------------------------------
# Reading JSONL, counting what cannot be used
# --------------------------------------------------------------------------------------------


@dataclass
class BadLines:
    """Malformed lines: how many, why, and where the first few are."""

    keep: int = 5
    count: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    first: list[tuple[int, str]] = field(default_factory=list)

    def add(self, lineno: int, reason: str) -> None:
        self.count += 1
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        if len(self.first) < self.keep:
            self.first.append((lineno, reason))

    def describe(self, lines: int) -> str:
        if not self.count:
            return f"0 of {lines:,} lines malformed"
        reasons = ", ".join(f"{reason} x{n}" for reason, n in sorted(self.by_reason.items()))
        where = ", ".join(str(lineno) for lineno, _ in self.first)
        more = ", ..." if self.count > len(self.first) else ""
        return (f"{self.count:,} of {lines:,} lines malformed ({self.count / max(lines, 1):.2%}): "
                f"{reasons}; first at line {where}{more}")


@dataclass
class LineCounter:
    """Lines and bytes read so far (the progress bar and the bad-line fraction use them)."""

    lines: int = 0
    bytes: int = 0


def read_documents(lines: Iterable[bytes], key: str, bad: BadLines,
                   counter: LineCounter | None = None) -> Iterator[tuple[int, str]]:
    """(line number, text) of each usable JSONL line; the others are recorded in `bad`.

    Lines are bytes so that invalid UTF-8 is one bad line, not a crash or silent U+FFFD text.
    """
    counter = counter if counter is not None else LineCounter()
    for lineno, raw in enumerate(lines, 1):
        counter.lines = lineno
        counter.bytes += len(raw)
        if not raw.strip():
            bad.add(lineno, "blank line")
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            bad.add(lineno, "not UTF-8")
            continue
        except json.JSONDecodeError:
            bad.add(lineno, "not JSON")
            continue
        if not isinstance(obj, dict):
            bad.add(lineno, "not a JSON object")
            continue
        if key not in obj:
            bad.add(lineno, f"no {key!r} key")
            continue
        text = obj[key]
        if not isinstance(text, str):
            bad.add(lineno, f"{key!r} is not a string")
            continue
        if not text.strip():
            bad.add(lineno, f"empty {key!r}")
            continue
        yield lineno, text


def batches(docs: Iterable[tuple[int, str]], max_docs: int = 512,
            max_chars: int = 8_000_000) -> Iterator[list[tuple[int, str]]]:
    """Group documents so that one call to the (multi-threaded) Rust tokenizer gets enough work."""
    batch, chars = [], 0
    for lineno, text in docs:
        batch.append((lineno, text))
        chars += len(text)
        if len(batch) >= max_docs or chars >= max_chars:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


# --------------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------------


@dataclass
class Tokenizer:
    """What preprocessing needs from a tokenizer, whichever library provides it."""

    encode_batch: Callable[[list[str]], list[list[int]]]
    """Token ids of each text, without special tokens (the EOD is appended separately)."""
    decode: Callable[[list[int]], str]
    eod: int
    eod_token: str
    vocab_size: int
    """len(tokenizer), added tokens included: what Megatron pads up to --make-vocab-size-divisible-by."""


def _missing(package: str, why: str) -> PreprocessError:
    return PreprocessError(f"{why} needs the '{package}' package: pip install {package} "
                           f"(or pip install -e '.[data]')")


def load_tokenizer(directory: Path) -> Tokenizer:
    """A HuggingFace tokenizer directory, loaded as Megatron's HuggingFaceTokenizer loads it."""
    if not directory.is_dir():
        raise PreprocessError(f"--tokenizer-model {directory}: no such directory")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        return _load_with_tokenizers(directory)
    try:
        hf = AutoTokenizer.from_pretrained(str(directory), use_fast=True)
    except Exception as err:  # transformers raises many types for a bad directory
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PreprocessError(f"--tokenizer-model {directory}: transformers cannot load it: {first}")
    if hf.eos_token is None:
        raise PreprocessError(f"--tokenizer-model {directory}: no eos_token in tokenizer_config.json; "
                              "Megatron's HuggingFaceTokenizer would have no eod id")
    eod = hf.convert_tokens_to_ids(hf.eos_token)
    return Tokenizer(
        encode_batch=lambda texts: hf(texts, add_special_tokens=False)["input_ids"],
        decode=lambda ids: hf.decode(ids),
        eod=eod, eod_token=hf.eos_token, vocab_size=len(hf))


def _load_with_tokenizers(directory: Path) -> Tokenizer:
    """Without transformers: tokenizer.json plus the eos_token named in tokenizer_config.json."""
    try:
        from tokenizers import Tokenizer as RustTokenizer
    except ImportError:
        raise _missing("transformers", "--tokenizer-model") from None
    tok_file, cfg_file = directory / "tokenizer.json", directory / "tokenizer_config.json"
    if not tok_file.exists() or not cfg_file.exists():
        raise PreprocessError(f"--tokenizer-model {directory}: without transformers installed, "
                              "needs tokenizer.json and tokenizer_config.json")
    eos = json.loads(cfg_file.read_text()).get("eos_token")
    eos = eos.get("content") if isinstance(eos, dict) else eos
    rust = RustTokenizer.from_file(str(tok_file))
    eod = rust.token_to_id(eos) if eos else None
    if eod is None:
        raise PreprocessError(f"--tokenizer-model {directory}: eos_token {eos!r} is not in the vocabulary")
    return Tokenizer(
        encode_batch=lambda texts: [e.ids for e in rust.encode_batch(texts, add_special_tokens=False)],
        decode=lambda ids: rust.decode(ids, skip_special_tokens=False),
        eod=eod, eod_token=eos, vocab_size=rust.get_vocab_size(with_added_tokens=True))


def tokenizer_config() -> dict[str, object]:
    """tokenizer_config.json for a tokenizer.json-only directory.

    Written by hand rather than by a transformers `save_pretrained`, so the file does not depend on
    the transformers version that trained it: 4.x and 5.x both read these keys, and
    `PreTrainedTokenizerFast` is the class that wraps a bare tokenizer.json in both.
    """
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOD_TOKEN,
        "eos_token": EOD_TOKEN,
        "pad_token": PAD_TOKEN,
        "clean_up_tokenization_spaces": False,
    }


def train_tokenizer(texts: Iterable[str], vocab_size: int, directory: Path,
                    show_progress: bool = False) -> None:
    """Train a byte-level BPE on texts and save a directory AutoTokenizer loads offline.

    The vocabulary size includes the two special tokens, so len(tokenizer) == vocab_size and, for a
    multiple of 128 such as 32768, Megatron adds no padding rows to the embedding.
    """
    try:
        from tokenizers import Tokenizer as RustTokenizer, decoders, models, pre_tokenizers
        from tokenizers import processors, trainers
    except ImportError:
        raise _missing("tokenizers", "--train-tokenizer") from None
    if vocab_size <= 256 + 2:
        raise PreprocessError(f"--train-tokenizer {vocab_size}: too small; a byte-level BPE holds "
                              "256 byte tokens and 2 special tokens before any merge (use e.g. 32768)")
    tok = RustTokenizer(models.BPE())
    # No normalizer: decode(encode(text)) == text exactly, which the round-trip check relies on.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOD_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is unknown
        show_progress=show_progress,
    )
    tok.train_from_iterator(texts, trainer)
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(), indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# Writing the indexed dataset
# --------------------------------------------------------------------------------------------


class Builder(Protocol):
    """The part of megatron-core's IndexedDatasetBuilder used here."""

    def add_document(self, tensor: list[int], lengths: list[int]) -> None: ...
    def finalize(self, idx_path: str) -> None: ...


BuilderFactory = Callable[[str, int], Builder]
"""(bin path, vocabulary size) -> builder."""


def megatron_builder(bin_path: str, vocab_size: int) -> Builder:
    """megatron-core's own IndexedDatasetBuilder, with the dtype Megatron picks for this vocab."""
    try:
        from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder
    except ImportError as err:
        raise PreprocessError(
            f"writing .bin/.idx needs megatron-core (missing module {err.name!r}): "
            "pip install 'megatron-core>=0.19,<0.20' on Python >= 3.12") from None
    # uint16 below 65,500 token ids: half the bytes of int32, and what Megatron's tools write.
    return IndexedDatasetBuilder(bin_path, dtype=DType.optimal_dtype(vocab_size))


class Progress:
    """One status line on stderr: redrawn in place on a terminal, every 10 s into a log file."""

    def __init__(self, stream: TextIO = sys.stderr, total_bytes: int | None = None,
                 interval: float | None = None):
        self.stream, self.total = stream, total_bytes
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.interval = interval if interval is not None else (0.5 if self.tty else 10.0)
        self.start = self.last = time.monotonic()

    def line(self, docs: int, nbytes: int, tokens: int) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        of = f"/{self.total / 1e6:,.1f}" if self.total else ""
        return (f"{docs:,} docs  {nbytes / 1e6:,.1f}{of} MB  {tokens / 1e6:,.2f}M tokens  "
                f"{tokens / elapsed / 1e3:,.0f}k tokens/s")

    def update(self, docs: int, nbytes: int, tokens: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        end = "\r" if self.tty and not force else "\n"
        self.stream.write(self.line(docs, nbytes, tokens) + end)
        self.stream.flush()


@dataclass
class Summary:
    """What preprocess wrote, for the closing report."""

    documents: int
    tokens: int
    lines: int
    bad: BadLines
    bin_path: Path
    idx_path: Path
    capped_at_line: int | None = None
    """Line of the last document written when --max-tokens stopped the run early."""


def output_paths(prefix: str, key: str) -> tuple[Path, Path]:
    """Megatron's naming: <prefix>_<json key>_document.bin/.idx (--data-path is the stem)."""
    stem = f"{prefix}_{key}_document"
    return Path(stem + ".bin"), Path(stem + ".idx")


def preprocess(lines: Iterable[bytes], key: str, tokenizer: Tokenizer, prefix: str,
               make_builder: BuilderFactory = megatron_builder, max_tokens: int | None = None,
               max_bad_fraction: float = 0.01, progress: Progress | None = None) -> Summary:
    """Tokenize every usable line, append the EOD id to each document and write .bin/.idx.

    Files are written under temporary names and renamed at the end, so a run that fails (too many
    malformed lines, no documents) leaves no half-written dataset behind.
    """
    bin_path, idx_path = output_paths(prefix, key)
    bin_path.parent.mkdir(parents=True, exist_ok=True)
    bad, counter = BadLines(), LineCounter()
    docs = tokens = 0
    capped_at = None
    with fileio.Staged() as staged:  # both files renamed into place at the end, or neither
        tmp_bin, tmp_idx = staged.reserve(bin_path), staged.reserve(idx_path)
        builder = make_builder(str(tmp_bin), tokenizer.vocab_size)
        source = read_documents(lines, key, bad, counter)
        for batch in batches(source):
            encoded = tokenizer.encode_batch([text for _, text in batch])
            for (lineno, _), ids in zip(batch, encoded):
                ids = list(ids) + [tokenizer.eod]
                if max_tokens is not None and tokens + len(ids) > max_tokens:
                    room = max_tokens - tokens
                    if room >= 2:  # a truncated document still ends with its EOD
                        ids = ids[:room - 1] + [tokenizer.eod]
                        builder.add_document(ids, [len(ids)])
                        docs, tokens = docs + 1, tokens + len(ids)
                    capped_at = lineno
                    break
                builder.add_document(ids, [len(ids)])
                docs, tokens = docs + 1, tokens + len(ids)
            if progress:
                progress.update(docs, counter.bytes, tokens)
            if capped_at is not None:
                break
        if progress:
            progress.update(docs, counter.bytes, tokens, force=True)
        lines_read = counter.lines
        if lines_read and bad.count / lines_read > max_bad_fraction:
            raise PreprocessError(f"{bad.describe(lines_read)}, more than --max-bad-fraction "
                                  f"{max_bad_fraction:g}; nothing written")
        if docs == 0:
            raise PreprocessError(f"no usable documents ({bad.describe(lines_read)}); nothing written")
        builder.finalize(str(tmp_idx))
    return Summary(docs, tokens, lines_read, bad, bin_path, idx_path, capped_at)


def read_back(stem: Path, count: int) -> list[list[int]]:
    """The first `count` documents of a written dataset, read by megatron-core's IndexedDataset."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    dataset = IndexedDataset(str(stem))
    return [dataset[i].tolist() for i in range(min(count, len(dataset)))]


def round_trip_problems(texts: list[str], documents: list[list[int]], tokenizer: Tokenizer) -> list[str]:
    """Where decoding the stored ids does not give back the source text (byte-level BPE is lossless)."""
    problems = []
    for i, (text, ids) in enumerate(zip(texts, documents)):
        if not ids or ids[-1] != tokenizer.eod:
            problems.append(f"document {i} does not end with the EOD id {tokenizer.eod}")
        elif tokenizer.decode(ids[:-1]) != text:
            problems.append(f"document {i} decodes to different text")
    return problems

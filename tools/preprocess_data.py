#!/usr/bin/env python3
"""Turn a JSONL corpus into Megatron's indexed dataset (<prefix>_text_document.bin/.idx).

One document per line ({"text": ...}); each gets the tokenizer's end-of-document token appended.
The tokenizer is a HuggingFace directory (--tokenizer-model), or is trained first on the corpus
(--train-tokenizer VOCAB_SIZE, a byte-level BPE saved into --tokenizer-model). Writing .bin/.idx
uses megatron-core's own IndexedDatasetBuilder (Python >= 3.12).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fp8suite.common.errors import exit_status  # noqa: E402
from fp8suite.corpus import preprocess as pp  # noqa: E402
from fp8suite.common.version import add_version_option  # noqa: E402

EPILOG = """examples:
  # train a 32,768-token byte-level BPE on the corpus (tokenizer only, no dataset)
  python tools/preprocess_data.py --input experiments/data/corpus/corpus.jsonl \\
      --train-tokenizer 32768 --tokenizer-model experiments/data/tokenizer

  # tokenize into experiments/data/corpus_text_document.{bin,idx} (needs megatron-core)
  python tools/preprocess_data.py --input experiments/data/corpus/corpus.jsonl \\
      --tokenizer-model experiments/data/tokenizer --output-prefix experiments/data/corpus \\
      --max-tokens 18000000

then train with: --data-path experiments/data/corpus_text_document
  --tokenizer-type HuggingFaceTokenizer --tokenizer-model experiments/data/tokenizer

exit status: 0 written (and checked), 1 the input, tokenizer or output could not be read or
written, 2 bad usage
"""

CHECK_DOCUMENTS = 3
"""Documents read back through megatron's IndexedDataset and detokenized after writing."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, required=True, help="JSONL file, one document per line")
    parser.add_argument("--json-key", default="text", help="key holding the text (default: %(default)s)")
    parser.add_argument("--tokenizer-model", type=Path, required=True,
                        help="HuggingFace tokenizer directory (written there with --train-tokenizer)")
    parser.add_argument("--train-tokenizer", type=int, metavar="VOCAB_SIZE",
                        help="first train a byte-level BPE of this many tokens on --input")
    parser.add_argument("--output-prefix", help="write <prefix>_<json-key>_document.bin/.idx; "
                                                "optional with --train-tokenizer")
    parser.add_argument("--max-tokens", type=int,
                        help="stop once this many tokens (EOD included) are written; the last "
                             "document is cut to fit")
    parser.add_argument("--max-bad-fraction", type=float, default=0.01,
                        help="fail if more than this fraction of lines is malformed "
                             "(default: %(default)s)")
    add_version_option(parser)
    args = parser.parse_args(argv)
    if args.output_prefix is None and args.train_tokenizer is None:
        parser.error("--output-prefix is required unless --train-tokenizer is given")
    if args.max_tokens is not None and args.max_tokens < 2:
        parser.error(f"--max-tokens {args.max_tokens}: must be at least 2")
    if not 0 <= args.max_bad_fraction <= 1:
        parser.error(f"--max-bad-fraction {args.max_bad_fraction}: must be between 0 and 1")
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train(args: argparse.Namespace) -> None:
    """Train the tokenizer on every usable line of --input and save it into --tokenizer-model."""
    if (args.tokenizer_model / "tokenizer.json").exists():
        raise pp.PreprocessError(f"--tokenizer-model {args.tokenizer_model} already holds a tokenizer; "
                                 "remove it, or drop --train-tokenizer to use it")
    start = time.monotonic()
    bad = pp.BadLines()
    counter = pp.LineCounter()
    log(f"training a {args.train_tokenizer:,}-token byte-level BPE on {args.input}")
    with open(args.input, "rb") as f:
        texts = (text for _, text in pp.read_documents(f, args.json_key, bad, counter))
        pp.train_tokenizer(texts, args.train_tokenizer, args.tokenizer_model,
                           show_progress=sys.stderr.isatty())
    if counter.lines and bad.count / counter.lines > args.max_bad_fraction:
        raise pp.PreprocessError(f"{args.input}: {bad.describe(counter.lines)}, more than "
                                 f"--max-bad-fraction {args.max_bad_fraction:g}")
    print(f"tokenizer   {args.tokenizer_model} (vocab {args.train_tokenizer:,}, trained on "
          f"{counter.bytes / 1e6:,.1f} MB in {time.monotonic() - start:.0f} s; {bad.describe(counter.lines)})")


def check(args: argparse.Namespace, tokenizer: pp.Tokenizer, summary: pp.Summary) -> str:
    """Read the first documents back with megatron's IndexedDataset; they must detokenize exactly."""
    stem = Path(str(summary.bin_path)[:-len(".bin")])
    stored = pp.read_back(stem, CHECK_DOCUMENTS)
    with open(args.input, "rb") as f:
        docs = pp.read_documents(f, args.json_key, pp.BadLines())
        texts = [text for _, text in itertools.islice(docs, len(stored))]
    if summary.capped_at_line is not None and summary.documents <= len(stored):
        texts, stored = texts[:-1], stored[:-1]  # the last document was cut by --max-tokens
    problems = pp.round_trip_problems(texts, stored, tokenizer)
    if problems:
        raise pp.PreprocessError(f"read-back check failed: {'; '.join(problems)}")
    return f"first {len(stored)} documents read back with IndexedDataset and detokenized exactly"


def report(args: argparse.Namespace, tokenizer: pp.Tokenizer, summary: pp.Summary,
           seconds: float, checked: str) -> None:
    capped = (f"; stopped by --max-tokens at line {summary.capped_at_line:,}"
              if summary.capped_at_line is not None else "")
    print(f"documents   {summary.documents:,}{capped}")
    print(f"tokens      {summary.tokens:,} ({summary.documents:,} of them EOD {tokenizer.eod_token!r} "
          f"= id {tokenizer.eod}) in {seconds:.0f} s")
    print(f"bad lines   {summary.bad.describe(summary.lines)}")
    print(f"tokenizer   {args.tokenizer_model} (len {tokenizer.vocab_size:,})")
    for path in (summary.bin_path, summary.idx_path):
        print(f"wrote       {path} ({path.stat().st_size / 1e6:,.1f} MB)")
    print(f"check       {checked}")
    print(f"megatron    --data-path {str(summary.bin_path)[:-len('.bin')]} "
          f"--tokenizer-type HuggingFaceTokenizer --tokenizer-model {args.tokenizer_model}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if not args.input.is_file():
            raise pp.PreprocessError(f"--input {args.input}: no such file")
        if args.train_tokenizer is not None:
            train(args)
        if args.output_prefix is None:
            return 0
        tokenizer = pp.load_tokenizer(args.tokenizer_model)
        start = time.monotonic()
        progress = pp.Progress(sys.stderr, total_bytes=args.input.stat().st_size)
        with open(args.input, "rb") as f:
            summary = pp.preprocess(f, args.json_key, tokenizer, args.output_prefix,
                                    make_builder=pp.megatron_builder, max_tokens=args.max_tokens,
                                    max_bad_fraction=args.max_bad_fraction, progress=progress)
        seconds = time.monotonic() - start
        checked = check(args, tokenizer, summary)
    except (pp.PreprocessError, OSError) as err:
        print(f"preprocess_data: error: {err}", file=sys.stderr)
        return 1
    report(args, tokenizer, summary, seconds, checked)
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))

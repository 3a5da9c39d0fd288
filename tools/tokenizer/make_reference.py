#!/usr/bin/env python3
"""Records Hugging Face `tokenizers` output on the committed corpus as C++ test references.

usage: make_reference.py TOKENIZERS_DIR OUT_DIR
  TOKENIZERS_DIR holds deepseek-v3/ and qwen2/ (from fetch_reference_tokenizers.sh).
Writes OUT_DIR/reference_<name>.json with, for every text, the ids with and without special
tokens, plus decode cases (random id sequences and HF's decoded text). Run through
make_reference.sh, which pins the `tokenizers` version.
"""
import json
import os
import random
import sys

import tokenizers
from tokenizers import Tokenizer
from tokenizers.processors import TemplateProcessing

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "..", "tests", "model", "tokenizer", "data", "corpus.txt")
DOC_SEPARATOR = "\n<<<DOC>>>\n"

# Short texts that probe boundaries the corpus documents do not isolate.
EDGE_CASES = [
    "", " ", "  ", "\n", "\r\n", "\t", "a", "A", " a", "a ", "0", "00", "000", "0000", "12345678",
    "'s", "'S", "I'm", "don't", "가", "한국어", "中", "日本語", "😀", "👨‍👩‍👧‍👦", "🇰🇷", "🏴󠁧󠁢󠁳󠁣󠁴󠁿",
    "e\u0301", "\u0301", "\ufeff", "\u00a0", "\u3000", "\u200b", "hello world", " hello  world ",
    "<|im_start|>", "<|im_end|>\n", "<｜begin▁of▁sentence｜>", "x<｜User｜>y", "<｜tool▁sep｜>",
    "ab" * 300, " " * 300, "가" * 200, "\n" * 50, "1" * 100, "!?" * 100,
]

# A Llama-3 style post-processor (bos via TemplateProcessing) grafted onto the DeepSeek file, so
# add_special_tokens=True is checked against a template that adds a token.
BOS_VARIANT = "deepseek-v3-bos"


def read_corpus():
    with open(CORPUS, encoding="utf-8", newline="") as f:
        text = f.read()
    return text.split(DOC_SEPARATOR)


def decode_cases(tok, rng):
    vocab = tok.get_vocab_size(with_added_tokens=True)
    special_ids = [i for i, t in tok.get_added_tokens_decoder().items() if t.special][:20]
    # Byte tokens (ids whose token is one byte-level char) make invalid UTF-8 sequences likely.
    byte_ids = [tok.token_to_id(t) for t in tok.get_vocab() if len(t) == 1][:256]
    cases = []
    for n in range(24):
        ids = []
        for _ in range(rng.randint(1, 60)):
            r = rng.random()
            if r < 0.1 and special_ids:
                ids.append(rng.choice(special_ids))
            elif r < 0.5:
                ids.append(rng.choice(byte_ids))
            else:
                ids.append(rng.randrange(vocab))
        cases.append({
            "ids": ids,
            "text": tok.decode(ids, skip_special_tokens=False),
            "text_skip_special": tok.decode(ids, skip_special_tokens=True),
        })
    return cases


def record(name, tok, texts, rng, post_processor=None):
    entries = []
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        entries.append({
            "text": text,
            "ids": ids,
            "ids_with_special": tok.encode(text, add_special_tokens=True).ids,
            # Differs from text only where the normalizer (Qwen2's NFC) changed it.
            "decoded": tok.decode(ids, skip_special_tokens=False),
        })
    out = {
        "tokenizer": name,
        "tokenizers_version": tokenizers.__version__,
        "normalizes": json.loads(tok.to_str())["normalizer"] not in (None, {"type": "Sequence", "normalizers": []}),
        "cases": entries,
        "decode_cases": decode_cases(tok, rng),
    }
    if post_processor is not None:
        out["post_processor"] = post_processor
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out_dir = sys.argv[1], sys.argv[2]
    texts = read_corpus() + EDGE_CASES
    rng = random.Random(1234)
    results = {}
    for name in ("deepseek-v3", "qwen2"):
        tok = Tokenizer.from_file(os.path.join(src, name, "tokenizer.json"))
        results[name] = record(name, tok, texts, rng)

    tok = Tokenizer.from_file(os.path.join(src, "deepseek-v3", "tokenizer.json"))
    bos = "<｜begin▁of▁sentence｜>"
    tok.post_processor = TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))])
    post = json.loads(tok.to_str())["post_processor"]
    results[BOS_VARIANT] = record(BOS_VARIANT, tok, texts[:20] + EDGE_CASES, rng, post)

    for name, data in results.items():
        path = os.path.join(out_dir, f"reference_{name}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
        print(f"wrote {path}: {len(data['cases'])} texts")


if __name__ == "__main__":
    main()

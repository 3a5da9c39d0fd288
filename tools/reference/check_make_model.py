"""Checks `expertmesh make-model` output with Hugging Face transformers and tokenizers.

For every architecture at tiny size (and one sharded model) it asserts that:
  * AutoConfig loads config.json as the right model_type;
  * AutoModelForCausalLM.from_pretrained reports no missing, unexpected or mismatched keys;
  * the weights transformers loaded equal the bytes in the safetensors file (embeddings);
  * a forward pass on a few ids gives finite logits of shape [1, n, vocab_size];
  * AutoTokenizer encodes a multilingual sample to exactly the ids `tokenizers` gives for
    tokenizer.json, with merges at work, and decodes it back unchanged;
  * apply_chat_template renders the family's prompt format.
Prints one line per check and exits non-zero on the first failure.
"""

import argparse
import json
import pathlib
import subprocess
import sys
import time

import torch
import transformers
from safetensors import safe_open
from tokenizers import Tokenizer

QWEN_CHAT = ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
             "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n안녕? 🚀<|im_end|>\n"
             "<|im_start|>assistant\n")
# model_type and the exact rendering of CHAT (with a generation prompt); the same strings are the
# expectations of tests/tools/make_model/chat_template_test.cc for expertmesh's interpreter.
ARCHS = {
    "llama": ("llama",
              "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\n안녕? 🚀<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    "mixtral": ("mixtral",
                "<s>[INST] Be brief.\n\nHi there [/INST]Hello!</s>[INST] 안녕? 🚀 [/INST]"),
    "qwen2-moe": ("qwen2_moe", QWEN_CHAT),
    "qwen3-moe": ("qwen3_moe", QWEN_CHAT),
    "deepseek-v2": ("deepseek_v2",
                    "<｜begin▁of▁sentence｜>Be brief.\n\nUser: Hi there\n\nAssistant: Hello!"
                    "<｜end▁of▁sentence｜>User: 안녕? 🚀\n\nAssistant:"),
    "deepseek-v3": ("deepseek_v3",
                    "<｜begin▁of▁sentence｜>Be brief.<｜User｜>Hi there<｜Assistant｜>Hello!"
                    "<｜end▁of▁sentence｜><｜User｜>안녕? 🚀<｜Assistant｜>"),
}
CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "안녕? 🚀"},
]

SAMPLE = (
    "The quick brown fox jumps over the lazy dog. 안녕하세요, 오늘 날씨가 좋네요! "
    "我们今天去公园散步。今日はいい天気ですね。\n"
    "def add(a, b):\n    return a + b\n\n    \t x = [1, 22, 333, 4444]\n"
    "Emoji: 🚀🔥👍🏽 👨‍👩‍👧   trailing spaces   "
)


# Texts whose `tokenizers` ids are recorded by --write-golden for the C++ tokenizer test.
GOLDEN_TEXTS = [
    SAMPLE,
    "Hello, world! It's 2024-03-15 and we've got 1,250,000 reasons.",
    "한국어 문장입니다. 띄어쓰기   여러 칸\n\n\t탭도 있어요.",
    "繁體字と日本語のカタカナ、ひらがな。中文标点：，。！？",
    "    if (x) {\n        return y;\n    }\n",
    "🤖🤖 emoji 👩🏽‍💻 with ZWJ and skin tones 🏳️‍🌈",
    "<|im_start|>user\nhi<|im_end|><｜User｜>[INST]<s></s><|eot_id|>",
]


def golden_record(model_dir):
    raw = Tokenizer.from_file(str(pathlib.Path(model_dir) / "tokenizer.json"))
    config = json.loads((pathlib.Path(model_dir) / "tokenizer.json").read_text())
    return {
        "num_merges": len(config["model"]["merges"]),
        "cases": [{"text": text,
                   "ids": raw.encode(text, add_special_tokens=False).ids,
                   "ids_with_special": raw.encode(text, add_special_tokens=True).ids}
                  for text in GOLDEN_TEXTS],
    }


def check(condition, message):
    if not condition:
        print(f"FAIL: {message}", flush=True)
        sys.exit(1)


def make(binary, arch, out, extra=()):
    command = [binary, "make-model", "--arch", arch, "--size", "tiny", "--out", str(out),
               "--seed", "7", *extra]
    start = time.time()
    result = subprocess.run(command, capture_output=True, text=True)
    check(result.returncode == 0, f"{' '.join(command)} failed:\n{result.stderr}")
    return time.time() - start


def check_model(model_dir, arch, model_type, expected_chat):
    config = transformers.AutoConfig.from_pretrained(model_dir)
    check(config.model_type == model_type, f"{arch}: model_type {config.model_type}")

    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, output_loading_info=True, dtype=torch.float32)
    problems = {key: value for key, value in info.items() if value}
    check(not problems, f"{arch}: loading info not empty: {problems}")
    model.eval()

    # The loaded embedding equals the stored one (bf16 widened to fp32).
    weights = sorted(pathlib.Path(model_dir).glob("*.safetensors"))
    stored = None
    for path in weights:
        with safe_open(str(path), framework="pt") as f:
            if "model.embed_tokens.weight" in f.keys():
                stored = f.get_tensor("model.embed_tokens.weight")
    check(stored is not None, f"{arch}: no embed_tokens in the checkpoint")
    loaded = model.get_input_embeddings().weight.detach()
    check(torch.equal(loaded, stored.to(torch.float32)), f"{arch}: embedding differs after load")

    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    raw = Tokenizer.from_file(str(pathlib.Path(model_dir) / "tokenizer.json"))
    ours = raw.encode(SAMPLE, add_special_tokens=False).ids
    theirs = hf_tokenizer(SAMPLE, add_special_tokens=False)["input_ids"]
    check(ours == theirs, f"{arch}: AutoTokenizer ids differ from tokenizer.json ids")
    check(len(ours) < 0.6 * len(SAMPLE.encode()), f"{arch}: {len(ours)} tokens, merges not used?")
    check(raw.decode(ours, skip_special_tokens=False) == SAMPLE, f"{arch}: decode != input")
    with_special = hf_tokenizer(SAMPLE)["input_ids"]
    if hf_tokenizer.bos_token is not None and json.loads(
            (pathlib.Path(model_dir) / "tokenizer_config.json").read_text())["add_bos_token"]:
        check(with_special[0] == hf_tokenizer.bos_token_id, f"{arch}: bos not added")

    ids = torch.tensor([theirs[:16]])
    with torch.no_grad():
        logits = model(ids).logits
    check(tuple(logits.shape) == (1, ids.shape[1], config.vocab_size),
          f"{arch}: logits shape {tuple(logits.shape)}")
    check(bool(torch.isfinite(logits).all()), f"{arch}: non-finite logits")

    rendered = hf_tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    check(rendered == expected_chat, f"{arch}: chat template renders {rendered!r}")
    return len(ours), logits.shape


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--work", required=True, type=pathlib.Path)
    parser.add_argument("--write-golden", type=pathlib.Path,
                        help="write the `tokenizers` ids of GOLDEN_TEXTS per architecture here")
    args = parser.parse_args()
    golden = {}
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    for arch, (model_type, chat) in ARCHS.items():
        out = args.work / arch
        seconds = make(args.binary, arch, out)
        n_tokens, shape = check_model(out, arch, model_type, chat)
        golden[arch] = golden_record(out)
        print(f"OK {arch:12s} made in {seconds:.2f}s; loaded with no missing/unexpected keys; "
              f"logits {tuple(shape)} finite; sample = {n_tokens} tokens, ids equal; "
              f"chat template renders", flush=True)
    out = args.work / "qwen3-moe-sharded"
    make(args.binary, "qwen3-moe", out, ["--shard-size", "200KB"])
    shards = sorted(p.name for p in out.glob("model-*-of-*.safetensors"))
    check(len(shards) > 1, f"sharded: only {shards}")
    check_model(out, "qwen3-moe (sharded)", "qwen3_moe", ARCHS["qwen3-moe"][1])
    print(f"OK qwen3-moe sharded into {len(shards)} files loads the same way", flush=True)
    if args.write_golden:
        args.write_golden.write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n")
        print(f"wrote {args.write_golden}")
    print("check_make_model: all architectures load in transformers")


if __name__ == "__main__":
    main()

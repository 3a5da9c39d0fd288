#!/usr/bin/env python3
"""Builds the golden-parity data under tests/golden/: for every supported architecture a small
random model made by `transformers` itself (saved in bf16, the published checkpoint layout) and the
reference logits and greedy continuations the C++ golden test compares the engine against.

Run through tools/golden/make_golden.sh (it makes the virtualenv with the pinned versions).
Everything is seeded, so a rerun with the same versions rewrites byte-identical model files and
reference logits that agree to float32 rounding.
"""
import argparse
import json
import math
import os
import re
import shutil
import sys

import numpy as np
import safetensors.torch
import torch
import transformers
from transformers import AutoModelForCausalLM
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

VOCAB = 512
NEW_TOKENS = 16
# Prompt lengths: a single token (pure decode from position 0), short, block-boundary-ish,
# medium and one long-ish prompt; 100 + 16 stays inside max_position_embeddings = 256.
PROMPT_LENGTHS = [1, 3, 8, 17, 40, 100]
PROMPT_SEED = 1234

# Shared small shape. hidden 64, 4 query heads over 2 KV heads (GQA) everywhere.
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rms_norm_eps=1e-6,
    bos_token_id=0,
    eos_token_id=1,
    tie_word_embeddings=False,
)

# One entry per architecture: the directory under tests/golden, the transformers model_type,
# config overrides, the seed, and what the entry is meant to exercise (copied into the README).
SPECS = [
    dict(
        arch="LlamaForCausalLM", dir="llama", model_type="llama", seed=101,
        config=dict(COMMON, intermediate_size=128, num_hidden_layers=3, tie_word_embeddings=True,
                    rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0,
                                         low_freq_factor=1.0, high_freq_factor=4.0,
                                         original_max_position_embeddings=64)),
        exercises="dense GQA (4 q / 2 kv heads, head_dim 16), tied embeddings, llama3 RoPE "
                  "scaling (factor 8, original 64) with rope_theta 500000",
    ),
    dict(
        arch="MixtralForCausalLM", dir="mixtral", model_type="mixtral", seed=102,
        config=dict(COMMON, intermediate_size=96, num_hidden_layers=2, num_local_experts=8,
                    num_experts_per_tok=2, sliding_window=None,
                    rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
        exercises="8 experts, softmax top-2 (renormalised over the selected two), GQA, "
                  "rope_theta 1e6",
    ),
    dict(
        arch="Qwen2MoeForCausalLM", dir="qwen2_moe", model_type="qwen2_moe", seed=103,
        config=dict(COMMON, intermediate_size=128, num_hidden_layers=3, num_experts=8,
                    num_experts_per_tok=3, moe_intermediate_size=32,
                    shared_expert_intermediate_size=96, norm_topk_prob=False, qkv_bias=True,
                    decoder_sparse_step=1, mlp_only_layers=[1], use_sliding_window=False,
                    rope_parameters=dict(rope_type="default", rope_theta=10000.0)),
        exercises="8 experts top-3 without renormalisation (norm_topk_prob false), shared "
                  "expert (96 wide) scaled by sigmoid(shared_expert_gate), q/k/v bias, layer 1 "
                  "dense via mlp_only_layers",
    ),
    dict(
        arch="Qwen3MoeForCausalLM", dir="qwen3_moe", model_type="qwen3_moe", seed=104,
        config=dict(COMMON, intermediate_size=128, num_hidden_layers=2, head_dim=32,
                    num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
                    norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
                    use_sliding_window=False,
                    rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
        exercises="explicit head_dim 32 (heads x head_dim != hidden), per-head q_norm/k_norm, "
                  "8 experts top-2 renormalised (norm_topk_prob true), rope_theta 1e6",
    ),
    dict(
        arch="DeepseekV2ForCausalLM", dir="deepseek_v2", model_type="deepseek_v2", seed=105,
        config=dict(COMMON, num_key_value_heads=4, intermediate_size=128, num_hidden_layers=3,
                    q_lora_rank=None, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
                    v_head_dim=16, n_routed_experts=8, n_shared_experts=2,
                    moe_intermediate_size=32, num_experts_per_tok=3, n_group=4, topk_group=2,
                    topk_method="group_limited_greedy", norm_topk_prob=False,
                    routed_scaling_factor=1.5, first_k_dense_replace=1,
                    rope_parameters=dict(rope_type="default", rope_theta=10000.0)),
        exercises="MLA without q LoRA (q_proj), kv_lora_rank 32, nope 16 / rope 8 / v 16, "
                  "interleaved-pair RoPE; softmax scoring, group_limited_greedy (4 groups, "
                  "keep 2) top-3 of 8, no renormalisation, routed_scaling_factor 1.5, 2 shared "
                  "experts, first layer dense (first_k_dense_replace 1)",
    ),
    dict(
        arch="DeepseekV3ForCausalLM", dir="deepseek_v3", model_type="deepseek_v3", seed=106,
        config=dict(COMMON, num_key_value_heads=4, intermediate_size=128, num_hidden_layers=3,
                    q_lora_rank=48, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
                    v_head_dim=16, n_routed_experts=16, n_shared_experts=1,
                    moe_intermediate_size=32, num_experts_per_tok=3, n_group=4, topk_group=2,
                    norm_topk_prob=True, routed_scaling_factor=2.5, first_k_dense_replace=1,
                    rope_interleave=True, num_mtp_layers=0,
                    rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=4.0,
                                         original_max_position_embeddings=64, beta_fast=32.0,
                                         beta_slow=1.0, mscale=1.0, mscale_all_dim=0.8)),
        exercises="MLA with q LoRA (q_a_proj, q_a_layernorm, q_b_proj), de-interleaved RoPE "
                  "(rope_interleave), YaRN (factor 4, original 64, mscale 1.0 != mscale_all_dim "
                  "0.8, so both the cos/sin attention factor and the softmax-scale mscale^2 "
                  "matter); sigmoid scoring, noaux_tc with a random nonzero "
                  "e_score_correction_bias, 4 groups keep 2, top-3 of 16 renormalised, "
                  "routed_scaling_factor 2.5, 1 shared expert, first layer dense",
    ),
]

ROUTER_STD = 0.5  # router rows: logits of a few units, so top-k choices are not near-ties
E_BIAS_STD = 0.1  # DeepSeek-V3 e_score_correction_bias: comparable to sigmoid score gaps


def init_weights(model, seed):
    """Replaces transformers' init (std 0.02, norms = 1, biases = 0) by one under which bugs show:
    variance-preserving linears (std 1/sqrt(fan_in)) so attention is far from uniform and logits
    have O(1) spread; norm weights 1 + N(0, 0.2) so a missing or misplaced norm weight shows;
    random biases (q/k/v bias would otherwise be zero); wide router rows; a random
    e_score_correction_bias (zero in transformers, which would hide a missing correction)."""
    gen = torch.Generator().manual_seed(seed)

    def randn(shape):
        return torch.randn(shape, generator=gen, dtype=torch.float32)

    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda x: x[0]):
            leaf = name.split(".")[-2] if name.count(".") else name
            if name.endswith("norm.weight") or "layernorm" in name or leaf.endswith("norm"):
                p.copy_(1.0 + 0.2 * randn(p.shape))
            elif name.endswith(".bias"):
                p.copy_(0.2 * randn(p.shape))
            elif name.endswith("mlp.gate.weight") or name.endswith("block_sparse_moe.gate.weight"):
                p.copy_(ROUTER_STD * randn(p.shape))
            elif name.endswith("shared_expert_gate.weight"):
                p.copy_(randn(p.shape) / math.sqrt(p.shape[-1]))
            elif "embed_tokens" in name:
                p.copy_(randn(p.shape) * (1.0 / math.sqrt(p.shape[-1]) if
                                         model.config.tie_word_embeddings else 1.0))
            elif p.dim() >= 2:
                p.copy_(randn(p.shape) / math.sqrt(p.shape[-1]))
            else:
                raise RuntimeError(f"no init rule for parameter {name} {tuple(p.shape)}")
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(E_BIAS_STD * randn(b.shape))


def prompts():
    rng = np.random.RandomState(PROMPT_SEED)
    # Ids 2.. so no prompt contains bos (0) or eos (1); values are otherwise uniform.
    return [rng.randint(2, VOCAB, size=n).tolist() for n in PROMPT_LENGTHS]


@torch.no_grad()
def run_greedy(model, ids, n_new):
    """Prefill `ids`, then n_new greedy steps one token at a time through the KV cache.
    Returns (prefill_logits [L, V], decode_logits [n_new, V], tokens [n_new]) as float64 numpy.
    tokens[0] = argmax(prefill_logits[-1]); decode row k is the output after feeding tokens[k]
    at position L + k, and tokens[k + 1] = argmax(decode row k) (the last row produces no
    recorded token). argmax ties go to the lowest id (torch.argmax)."""
    out = model(input_ids=torch.tensor([ids]), use_cache=True)
    prefill = out.logits[0].double()
    past = out.past_key_values
    tok = int(torch.argmax(prefill[-1]))
    tokens, decode = [], []
    for _ in range(n_new):
        tokens.append(tok)
        out = model(input_ids=torch.tensor([[tok]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        row = out.logits[0, -1].double()
        decode.append(row)
        tok = int(torch.argmax(row))
    return prefill.numpy(), torch.stack(decode).numpy(), tokens


@torch.no_grad()
def run_forced(model, ids, tokens):
    """Like run_greedy, but feeds the given `tokens` (the fp32 greedy continuation) instead of its
    own choices, so its decode rows are comparable row by row with the fp32 ones."""
    out = model(input_ids=torch.tensor([ids]), use_cache=True)
    past, decode = out.past_key_values, []
    for tok in tokens:
        out = model(input_ids=torch.tensor([[tok]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        decode.append(out.logits[0, -1].double())
    return torch.stack(decode).numpy()


def margins(rows):
    top2 = np.sort(rows, axis=-1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]).tolist()


def step_rows(prefill, decode):
    """The logit rows that chose the greedy tokens: prefill last row, then decode rows 0..N-2."""
    return np.concatenate([prefill[-1:], decode[:-1]], axis=0)


def seq_cosine(a, b):
    """Cosine similarity of two whole logit blocks, flattened (one number per sequence)."""
    a, b = a.reshape(-1), b.reshape(-1)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def cosine(a, b):
    """Smallest per-row cosine similarity."""
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return float((num / den).min())


class RouterProbe:
    """Hooks every router and records how close each top-k decision came to a tie: the gap between
    the k-th chosen and the best rejected expert among the kept groups, and for grouped routing
    the gap between the last kept and the best dropped group. Softmax routers rank by the router
    logit (softmax is monotone, and probabilities squeeze gaps between small ones); noaux_tc ranks
    by sigmoid(logit) + e_score_correction_bias, the quantity it selects with."""

    def __init__(self, model):
        self.cfg = model.config
        self.expert_gap = math.inf
        self.group_gap = math.inf
        self.handles = []
        for name, mod in model.named_modules():
            if type(mod).__name__.endswith("Router"):
                self.handles.append(mod.register_forward_hook(self.hook))

    def hook(self, mod, inputs, output):
        logits = output[0].detach().double().reshape(-1, output[0].shape[-1])
        cfg, k = self.cfg, self.cfg.num_experts_per_tok
        n = logits.shape[-1]
        bias = getattr(mod, "e_score_correction_bias", None)
        if bias is not None:  # noaux_tc
            crit = logits.sigmoid() + bias.double()
            group_score = crit.view(-1, cfg.n_group, n // cfg.n_group).topk(2, -1)[0].sum(-1)
        else:
            crit = logits
            group_score = None
            if getattr(cfg, "topk_method", "greedy") == "group_limited_greedy":
                group_score = crit.view(-1, cfg.n_group, n // cfg.n_group).max(-1).values
        if group_score is not None:
            gs = group_score.sort(-1, descending=True).values
            self.group_gap = min(self.group_gap, float((gs[:, cfg.topk_group - 1] -
                                                        gs[:, cfg.topk_group]).min()))
            keep = group_score.topk(cfg.topk_group, -1).indices
            mask = torch.zeros_like(group_score).scatter_(1, keep, 1.0)
            mask = mask.repeat_interleave(n // cfg.n_group, dim=-1).bool()
            crit = crit.masked_fill(~mask, -math.inf)
        cs = crit.sort(-1, descending=True).values
        self.expert_gap = min(self.expert_gap, float((cs[:, k - 1] - cs[:, k]).min()))

    def close(self):
        for h in self.handles:
            h.remove()


def dump_json(value):
    """Indented JSON with every list of numbers on one line (ids, tokens, margins)."""
    text = json.dumps(value, indent=1)
    return re.sub(r"\[\s+([-+0-9.,eE\s]+?)\s+\]",
                  lambda m: "[" + " ".join(m.group(1).split()) + "]", text) + "\n"


def rounded(x, digits=6):
    return float(f"{x:.{digits}g}")


def build(spec, seed, out_root):
    model_dir = os.path.join(out_root, spec["dir"], "model")
    if os.path.isdir(model_dir):
        shutil.rmtree(model_dir)
    torch.manual_seed(seed)
    config = CONFIG_MAPPING[spec["model_type"]](**spec["config"])
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    assert type(model).__name__ == spec["arch"], type(model).__name__
    init_weights(model, seed)
    # The engine keeps weights in bf16: save them rounded (e_score_correction_bias stays fp32,
    # as transformers keeps it and as real DeepSeek-V3 checkpoints store it).
    fp32_buffers = {n: b.detach().clone() for n, b in model.named_buffers()
                    if n.endswith("e_score_correction_bias")}
    model = model.to(torch.bfloat16)
    for name, value in fp32_buffers.items():
        owner, attr = name.rsplit(".", 1)
        setattr(model.get_submodule(owner), attr, torch.nn.Buffer(value))
    model.generation_config.eos_token_id = None
    model.save_pretrained(model_dir, safe_serialization=True)
    return model_dir


def load(model_dir, dtype):
    model, info = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=dtype, attn_implementation="eager", experts_implementation="eager",
        output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    if bad:
        raise RuntimeError(f"{model_dir}: loading reported {bad}")
    return model.eval()


def check_layout(spec, model_dir):
    """The saved directory must be a published-style checkpoint: config.json naming the class,
    the weights in bf16 safetensors under the original key names."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["architectures"] == [spec["arch"]], cfg["architectures"]
    rope_key = "rope_parameters" if "rope_parameters" in cfg else "rope_scaling"
    dtype_key = "dtype" if "dtype" in cfg else "torch_dtype"
    assert cfg[dtype_key] == "bfloat16", cfg[dtype_key]
    files = [f for f in os.listdir(model_dir) if f.endswith(".safetensors")]
    dtypes, keys = {}, []
    for fname in files:
        tensors = safetensors.torch.load_file(os.path.join(model_dir, fname))
        for k, t in tensors.items():
            keys.append(k)
            dtypes.setdefault(str(t.dtype).replace("torch.", ""), []).append(k)
    non_bf16 = {d: v for d, v in dtypes.items() if d != "bfloat16"}
    assert set(non_bf16) <= {"float32"}, non_bf16
    if spec["model_type"] == "deepseek_v3":
        assert any(k.endswith("e_score_correction_bias") for k in non_bf16.get("float32", [])), \
            "e_score_correction_bias must be stored in float32"
    assert all(k.endswith("e_score_correction_bias") for v in non_bf16.values() for k in v), \
        non_bf16
    expert_keys = sorted(k for k in keys if ".experts." in k)
    return dict(config_keys=dict(rope=rope_key, dtype=dtype_key),
                safetensors_files=sorted(files), tensor_count=len(keys),
                example_expert_key=expert_keys[0] if expert_keys else None,
                float32_tensors=sorted(k for v in non_bf16.values() for k in v))


# A model is accepted only if float32 noise (~5e-6 on logits, measured against float64) cannot
# flip a decision: every greedy top-1/top-2 logit gap and every router top-k gap must clear these.
MIN_GREEDY_MARGIN = 1e-3
MIN_ROUTER_GAP = 1e-4
MAX_ATTEMPTS = 40


def make_one(spec, out_root):
    """Builds the model for `spec`, trying seeds spec.seed, spec.seed + 1000, ... until no
    decision is a near-tie, then writes the reference files."""
    for attempt in range(MAX_ATTEMPTS):
        seed = spec["seed"] + 1000 * attempt
        ref = attempt_one(spec, seed, out_root)
        m = ref["measured"]
        gaps = [g for g in (m["fp32_min_router_expert_gap"], m["fp32_min_router_group_gap"])
                if g is not None]
        if m["fp32_min_greedy_margin"] >= MIN_GREEDY_MARGIN and min(gaps, default=1) >= \
                MIN_ROUTER_GAP:
            return ref
        print(f"  {spec['arch']} seed {seed}: near-tie (greedy margin "
              f"{m['fp32_min_greedy_margin']}, router gaps {gaps}); next seed", flush=True)
    raise RuntimeError(f"{spec['arch']}: no seed without near-ties in {MAX_ATTEMPTS} tries")


def attempt_one(spec, seed, out_root):
    model_dir = build(spec, seed, out_root)
    layout = check_layout(spec, model_dir)
    ref32 = load(model_dir, torch.float32)
    ref64 = load(model_dir, torch.float64)
    ref16 = load(model_dir, torch.bfloat16)
    bias = [b for n, b in ref32.named_buffers() if n.endswith("e_score_correction_bias")]
    if spec["model_type"] == "deepseek_v3":
        assert bias and all(float(b.abs().max()) > 0 for b in bias), "bias lost on reload"

    probe = RouterProbe(ref32)
    seqs, tensors = [], {}
    stats = dict(fp64_max_abs=0.0, bf16_prefill_max_abs=0.0, bf16_prefill_mean_abs=[],
                 bf16_prefill_min_cos=1.0, bf16_last_max_abs=0.0, bf16_decode_max_abs=0.0,
                 bf16_decode_min_cos=1.0, bf16_decode_mean_abs=[], bf16_seq_cos=[], bf16_diverged_at_margin=0.0, bf16_greedy_equal_steps=[], fp32_min_margin=math.inf,
                 logit_std=[])
    for i, ids in enumerate(prompts()):
        pre32, dec32, tok32 = run_greedy(ref32, ids, NEW_TOKENS)
        pre64, dec64, tok64 = run_greedy(ref64, ids, NEW_TOKENS)
        pre16, dec16, tok16 = run_greedy(ref16, ids, NEW_TOKENS)
        # model.generate must agree with the manual cache loop (it never stops: eos is unset).
        gen = ref32.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=NEW_TOKENS,
                             min_new_tokens=NEW_TOKENS, eos_token_id=None, pad_token_id=0)
        assert gen[0, len(ids):].tolist() == tok32, (spec["arch"], i, "generate differs")

        m32 = margins(step_rows(pre32, dec32))
        same = 0
        while same < NEW_TOKENS and tok16[same] == tok32[same]:
            same += 1
        # fp64 against fp32 while both follow the same tokens (they do unless a margin is tiny).
        n64 = next((j for j in range(NEW_TOKENS) if tok64[j] != tok32[j]), NEW_TOKENS)
        stats["fp64_max_abs"] = max(stats["fp64_max_abs"], float(np.abs(pre64 - pre32).max()),
                                    float(np.abs(dec64[:n64] - dec32[:n64]).max(initial=0)))
        d = np.abs(pre16 - pre32)
        stats["bf16_prefill_max_abs"] = max(stats["bf16_prefill_max_abs"], float(d.max()))
        stats["bf16_prefill_mean_abs"].append(float(d.mean()))
        stats["bf16_seq_cos"].append(seq_cosine(pre16, pre32))
        stats["bf16_prefill_min_cos"] = min(stats["bf16_prefill_min_cos"], cosine(pre16, pre32))
        stats["bf16_last_max_abs"] = max(stats["bf16_last_max_abs"], float(d[-1].max()))
        # Decode rows are comparable only while both runs fed the same tokens.
        if same < NEW_TOKENS:
            stats["bf16_diverged_at_margin"] = max(stats["bf16_diverged_at_margin"], m32[same])
        # Decode rows teacher-forced along the fp32 tokens, so all of them are comparable.
        forced16 = run_forced(ref16, ids, tok32)
        dd = np.abs(forced16 - dec32)
        stats["bf16_decode_max_abs"] = max(stats["bf16_decode_max_abs"], float(dd.max()))
        stats["bf16_decode_min_cos"] = min(stats["bf16_decode_min_cos"], cosine(forced16, dec32))
        stats["bf16_decode_mean_abs"].append(float(dd.mean()))
        stats["bf16_seq_cos"].append(seq_cosine(forced16, dec32))
        stats["bf16_greedy_equal_steps"].append(same)
        stats["fp32_min_margin"] = min(stats["fp32_min_margin"], min(m32))
        stats["logit_std"].append(float(pre32.std()))

        tensors[f"seq{i}.prefill_logits"] = torch.from_numpy(pre32.astype(np.float32))
        tensors[f"seq{i}.decode_logits"] = torch.from_numpy(dec32.astype(np.float32))
        tensors[f"seq{i}.bf16.last_logits"] = torch.from_numpy(pre16[-1:].astype(np.float32))
        tensors[f"seq{i}.bf16.decode_logits"] = torch.from_numpy(dec16.astype(np.float32))
        seqs.append(dict(
            input_ids=ids,
            greedy_tokens=tok32,
            greedy_margins=[rounded(x) for x in m32],
            prefill_logits=f"seq{i}.prefill_logits",
            decode_logits=f"seq{i}.decode_logits",
            bf16=dict(greedy_tokens=tok16,
                      greedy_margins=[rounded(x) for x in margins(step_rows(pre16, dec16))],
                      steps_equal_to_fp32=same,
                      last_logits=f"seq{i}.bf16.last_logits",
                      decode_logits=f"seq{i}.bf16.decode_logits"),
        ))
    probe.close()

    s = stats
    measured = dict(
        fp32_vs_fp64_max_abs=rounded(s["fp64_max_abs"], 3),
        bf16_vs_fp32=dict(
            prefill_max_abs=rounded(s["bf16_prefill_max_abs"], 3),
            # Mean |diff| per sequence, worst sequence: robust to the few rows where a bf16
            # rounding flips a routing decision and the max jumps.
            prefill_mean_abs=rounded(max(s["bf16_prefill_mean_abs"]), 3),
            prefill_min_cosine=rounded(s["bf16_prefill_min_cos"], 6),
            last_position_max_abs=rounded(s["bf16_last_max_abs"], 3),
            decode_max_abs=rounded(s["bf16_decode_max_abs"], 3),
            decode_min_cosine=rounded(s["bf16_decode_min_cos"], 6),
            decode_mean_abs=rounded(max(s["bf16_decode_mean_abs"], default=0.0), 3),
            min_sequence_cosine=rounded(min(s["bf16_seq_cos"]), 6),
            greedy_steps_equal=s["bf16_greedy_equal_steps"],
            # The largest fp32 margin at which the free-running bf16 greedy run first diverged.
            diverged_at_fp32_margin=rounded(s["bf16_diverged_at_margin"], 3)),
        fp32_min_greedy_margin=rounded(s["fp32_min_margin"], 3),
        fp32_min_router_expert_gap=(rounded(probe.expert_gap, 3)
                                    if probe.expert_gap != math.inf else None),
        fp32_min_router_group_gap=(rounded(probe.group_gap, 3)
                                   if probe.group_gap != math.inf else None),
        logit_std=rounded(float(np.mean(s["logit_std"])), 3),
    )
    # Bounds for the engine (see README): fp32 compute must match to float32 noise; bf16 compute
    # is held to twice what transformers' own bf16 run shows against its fp32 run.
    bf = measured["bf16_vs_fp32"]
    tolerances = dict(
        # fp32 compute: 200x the float32-vs-float64 noise; every greedy margin is >= 1e-3 by
        # construction (see MIN_GREEDY_MARGIN), so every greedy token must be identical.
        fp32=dict(max_abs=1e-3, min_row_cosine=0.99999, greedy_margin=MIN_GREEDY_MARGIN),
        # bf16 compute: twice what transformers' own bf16 run shows against its fp32 run. A
        # bf16 rounding can flip a routing decision on some rows, so max_abs is loose there; the
        # per-sequence mean and whole-sequence cosine carry the check. Greedy tokens are checked
        # only where the fp32 margin exceeds greedy_margin (and earlier tokens agreed).
        bf16=dict(max_abs=rounded(max(2.0 * bf["prefill_max_abs"], 2.0 * bf["decode_max_abs"],
                                      0.05), 3),
                  mean_abs=rounded(max(2.0 * bf["prefill_mean_abs"], 2.0 * bf["decode_mean_abs"],
                                       0.01), 3),
                  min_sequence_cosine=rounded(min(1.0 - 2.0 * (1.0 - bf["min_sequence_cosine"]),
                                                  0.9999), 6),
                  greedy_margin=rounded(max(2.0 * bf["last_position_max_abs"],
                                            2.0 * bf["diverged_at_fp32_margin"], 0.1), 3)),
    )

    ref_dir = os.path.join(out_root, spec["dir"])
    logits_file = os.path.join(ref_dir, "reference.safetensors")
    safetensors.torch.save_file(tensors, logits_file, metadata={"format": "pt"})
    reference = dict(
        format_version=1,
        architecture=spec["arch"],
        model_dir="model",
        logits_file="reference.safetensors",
        exercises=spec["exercises"],
        versions=dict(torch=torch.__version__, transformers=transformers.__version__,
                      safetensors=safetensors.__version__),
        seed=seed,
        new_tokens=NEW_TOKENS,
        layout=layout,
        measured=measured,
        tolerances=tolerances,
        sequences=seqs,
    )
    with open(os.path.join(ref_dir, "reference.json"), "w") as f:
        f.write(dump_json(reference))
    return reference


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="tests/golden directory")
    ap.add_argument("--arch", action="append", help="only these directories (e.g. llama)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    summary = {}
    for spec in SPECS:
        if args.arch and spec["dir"] not in args.arch:
            continue
        ref = make_one(spec, args.out)
        summary[spec["dir"]] = ref["measured"]
        print(f"{spec['arch']}: {json.dumps(ref['measured'])}", flush=True)
        print(f"  tolerances: {json.dumps(ref['tolerances'])}", flush=True)
    # measured.json gathers every architecture's numbers; a partial run updates its entries.
    path = os.path.join(args.out, "measured.json")
    merged = {}
    if os.path.exists(path):
        with open(path) as f:
            merged = json.load(f).get("architectures", {})
    merged.update(summary)
    with open(path, "w") as f:
        f.write(dump_json(dict(torch=torch.__version__, transformers=transformers.__version__,
                               architectures={k: merged[k] for k in sorted(merged)})))


if __name__ == "__main__":
    sys.exit(main())

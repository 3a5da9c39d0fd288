#!/usr/bin/env python3
"""Builds golden data for the 4-bit and per-channel FP8 checkpoint layouts under
tests/golden/<dir>/: a small random model made by `transformers` (as make_golden.py makes them),
rewritten exactly as the published checkpoints of each format lay it out, and reference logits
from transformers run on the *dequantized* weights.

Formats (one Qwen3-MoE and one DeepSeek-V3 directory each):

  compressed-tensors `pack-quantized` int4 (llm-compressor W4A16, Kimi-K2-Thinking):
      <m>.weight_packed  int32 [out, in/8]   q + 8 (q signed in [-8, 7]); input column 8k + j
                                             sits at bits 4j..4j+3 of word k
      <m>.weight_scale   bf16  [out, in/G]   group g covers input columns gG .. gG + G - 1
      <m>.weight_shape   int64 [2]           [out, in]
      w[o][i] = q[o][i] * scale[o][i / G]

  GPTQ int4, checkpoint_format "gptq" (v1), as Qwen's GPTQ-Int4 releases:
      <m>.qweight  int32 [in/8, out]   input row 8k + j at bits 4j of qweight[k][o]
      <m>.qzeros   int32 [in/G, out/8] output column 8c + j at bits 4j of qzeros[g][c]; the
                                       stored value is zero - 1 (v1), so zero = stored + 1
      <m>.scales   fp16  [in/G, out]
      <m>.g_idx    int32 [in]          the group of each input row (i / G without act-order)
      w[o][i] = (q[i][o] - zero[g_idx[i]][o]) * scales[g_idx[i]][o]
      The rest of the model is float16, as Qwen's GPTQ releases are.

  compressed-tensors `float-quantized` per-channel FP8 (llm-compressor FP8_DYNAMIC):
      <m>.weight        float8_e4m3fn [out, in]
      <m>.weight_scale  [out, 1] (bf16 for Qwen3-MoE, f32 for DeepSeek-V3)
      w[o][i] = float(q[o][i]) * scale[o]; the config's dynamic per-token FP8 input
      activations are *not* applied by the reference (the engine serves it as W8A16).

The dequantization is written here from those definitions (checked against compressed-tensors'
pack_to_int32 / unpack_from_int32 and AutoGPTQ's QuantLinear pack / forward), not taken from the
C++ code. After saving, every checkpoint is re-read from disk and unpacked a second way (raw
safetensors bytes, numpy nibble views, a hand-written e4m3 decoder) and compared bit for bit with
the weights the reference model loaded.

Everything else (prompts, greedy loop, margins, tolerances, reference.json) is make_golden.py's,
so the C++ golden test reads these directories like the bf16 ones.

Run through tools/golden/make_golden.sh --int4 (it makes the virtualenv with the pinned versions).
"""
import argparse
import json
import os
import re
import shutil
import struct
import sys

import numpy as np
import safetensors.torch
import torch

import make_golden as mg

FP8_MAX = 448.0

# The module names (checkpoint key minus ".weight") that are nn.Linear in the published modeling
# code, i.e. what a compressed-tensors target "Linear" matches. DeepSeek's router (MoEGate /
# DeepseekV3TopkRouter) is not a Linear; Qwen3-MoE's router `mlp.gate` is.
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "q_a_proj", "q_b_proj",
               "kv_a_proj_with_mqa", "kv_b_proj", "gate_proj", "up_proj", "down_proj")


def is_linear(module, model_type):
    leaf = module.rsplit(".", 1)[-1]
    if leaf in PROJECTIONS or module == "lm_head":
        return True
    return model_type == "qwen3_moe" and module.endswith(".mlp.gate")


def ct_match(name, patterns):
    """compressed-tensors' name matching (utils/match.py _match_name): a "re:" pattern matches
    with re.match (anchored at the start only), anything else must equal the name."""
    for p in patterns:
        if p.startswith("re:"):
            if re.match(p[3:], name) is not None:
                return True
        elif p == name:
            return True
    return False


# Widths: every quantized layer's input width is a multiple of its group size (and of 32).
# Qwen3-MoE at group 128: hidden 128, head_dim 64 (so o_proj reads 4 x 64 = 256, two groups),
# experts 128 wide.
QWEN_INT4 = dict(hidden_size=128, head_dim=64, moe_intermediate_size=128, intermediate_size=256)
# DeepSeek-V3 at group 32 (only the routed experts are quantized): hidden 64 and experts 64 wide,
# two groups each way.
DS_CT = dict(moe_intermediate_size=64)
# DeepSeek-V3 GPTQ at group 64: hidden 128, q LoRA 128, kv LoRA 64, v_head_dim 32 (o_proj reads
# 128), dense MLP 128, experts and the shared expert 64 wide; every output width a multiple of 8
# (kv_a_proj_with_mqa: 64 + 8 = 72, q_b_proj: 4 x 24 = 96, kv_b_proj: 4 x 48 = 192).
DS_GPTQ = dict(hidden_size=128, q_lora_rank=128, kv_lora_rank=64, v_head_dim=32,
               moe_intermediate_size=64, intermediate_size=128)

KIMI_IGNORE = ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*",
               r"re:.*mlp\.(gate|up|gate_up|down)_proj.*"]

SPECS = [
    dict(base="qwen3_moe", dir="qwen3_moe_int4_ct", seed=311, fmt="ct_int4", group=128,
         config=QWEN_INT4,
         # What llm-compressor serialises: the ignored Linear modules by name.
         ignore=["lm_head", "model.layers.0.mlp.gate", "model.layers.1.mlp.gate"],
         exercises="Qwen3-MoE in compressed-tensors pack-quantized int4 (W4A16, symmetric, group "
                   "128): every attention projection and expert in int32-packed nibbles "
                   "(weight_packed [out, in/8]) with bf16 weight_scale [out, in/128] and int64 "
                   "weight_shape; routers and lm_head bf16, listed by name in ignore; hidden "
                   "128, head_dim 64 (o_proj reads 256: two groups), experts 128 wide; "
                   "reference on the dequantized weights"),
    dict(base="deepseek_v3", dir="deepseek_v3_int4_ct", seed=312, fmt="ct_int4", group=32,
         config=DS_CT, ignore=KIMI_IGNORE,
         exercises="DeepSeek-V3 in compressed-tensors pack-quantized int4 as Kimi-K2-Thinking "
                   "ships it (symmetric, group 32, Kimi's regex ignore list): only the routed "
                   "experts are int4 (weight_packed, bf16 weight_scale, int64 weight_shape); "
                   "MLA attention, the dense first layer, the shared expert, routers and "
                   "lm_head stay bf16; hidden 64 and experts 64 wide (two groups each way); "
                   "reference on the dequantized weights"),
    dict(base="qwen3_moe", dir="qwen3_moe_gptq", seed=321, fmt="gptq", group=128, sym=True,
         desc_act=False, config=QWEN_INT4,
         exercises="Qwen3-MoE in GPTQ int4 as Qwen's GPTQ-Int4 releases (checkpoint_format gptq "
                   "v1, sym, desc_act false, group 128): qweight [in/8, out], qzeros [in/128, "
                   "out/8] (all 0x77777777: zero 8 stored as 7), fp16 scales, g_idx i/128; "
                   "attention and experts quantized, routers, norms, embeddings and lm_head "
                   "float16; hidden 128, head_dim 64 (o_proj: two groups); reference on the "
                   "dequantized weights"),
    dict(base="deepseek_v3", dir="deepseek_v3_gptq", seed=322, fmt="gptq", group=64, sym=False,
         desc_act=True, config=DS_GPTQ,
         exercises="DeepSeek-V3 in GPTQ int4 (checkpoint_format gptq v1, asymmetric with "
                   "per-group zero points stored minus 1, desc_act true: g_idx from a random "
                   "act-order permutation, exactly 64 rows per group, group 64): every MLA "
                   "projection, the dense MLP, shared and routed experts quantized; router, "
                   "norms, embeddings, lm_head float16, e_score_correction_bias f32; hidden "
                   "128, q LoRA 128, kv LoRA 64, v_head_dim 32; reference on the dequantized "
                   "weights"),
    dict(base="qwen3_moe", dir="qwen3_moe_fp8_channel", seed=331, fmt="ct_fp8", config={},
         scale_dtype=torch.bfloat16, ignore=["lm_head", "re:.*mlp.gate$"],
         exercises="Qwen3-MoE in compressed-tensors float-quantized FP8 (llm-compressor "
                   "FP8_DYNAMIC): every attention projection and expert weight float8_e4m3fn "
                   "with a bf16 per-output-channel weight_scale [out, 1]; routers (regex ignore "
                   "re:.*mlp.gate$) and lm_head bf16; the config declares dynamic per-token FP8 "
                   "input activations, but the reference (and the engine, which serves this as "
                   "W8A16) dequantizes the weights only and keeps activations unquantized"),
    dict(base="deepseek_v3", dir="deepseek_v3_fp8_channel", seed=332, fmt="ct_fp8", config={},
         scale_dtype=torch.float32, ignore=["lm_head"],
         exercises="DeepSeek-V3 in compressed-tensors float-quantized FP8 (llm-compressor "
                   "FP8_DYNAMIC): every MLA projection, the dense MLP, shared and routed experts "
                   "float8_e4m3fn with an f32 per-output-channel weight_scale [out, 1]; router "
                   "(not a Linear, so not in ignore), norms, embeddings and lm_head (ignore) "
                   "bf16; dynamic per-token FP8 input activations in the config are not applied "
                   "by the reference (W8A16); reference on the dequantized weights"),
]


# ---------------------------------------------------------------------------------------------
# Packing and the reference dequantization (path A: torch shifts and masks).

def pack_nibbles(u):
    """u: int64 [..., n] with values 0..15, n % 8 == 0 -> int32 [..., n/8], element 8k + j at
    bits 4j..4j+3 of word k (compressed-tensors pack_to_int32, AutoGPTQ pack)."""
    assert u.shape[-1] % 8 == 0 and int(u.min()) >= 0 and int(u.max()) <= 15
    words = (u.reshape(*u.shape[:-1], -1, 8) << (4 * torch.arange(8))).sum(-1)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def unpack_nibbles_a(words, axis):
    """Path A: int32 words -> int64 nibbles 0..15, 8 per word along `axis` (0 or 1), element
    8k + j from bits 4j of word k."""
    w = words.to(torch.int64) & 0xFFFFFFFF
    shifts = 4 * torch.arange(8)
    if axis == 1:   # [r, c] -> [r, 8c]
        return ((w[:, :, None] >> shifts) & 0xF).reshape(w.shape[0], -1)
    # [r, c] -> [8r, c]
    return ((w[:, None, :] >> shifts[None, :, None]) & 0xF).reshape(-1, w.shape[1])


def ct_int4_quantize(w, group):
    """compressed-tensors symmetric int4 group quantization: scale = amax / 7.5 per group
    (bf16, the model dtype), q = clamp(round(w / scale), -8, 7)."""
    out, inn = w.shape
    wg = w.float().reshape(out, inn // group, group)
    amax = wg.abs().amax(-1)
    scale = torch.where(amax > 0, amax / 7.5, torch.ones_like(amax)).to(torch.bfloat16)
    q = torch.clamp(torch.round(wg / scale.float()[..., None]), -8, 7).to(torch.int64)
    q = q.reshape(out, inn)
    return {"weight_packed": pack_nibbles(q + 8), "weight_scale": scale,
            "weight_shape": torch.tensor([out, inn], dtype=torch.int64)}


def ct_int4_dequantize(t, group):
    out, inn = (int(x) for x in t["weight_shape"])
    q = unpack_nibbles_a(t["weight_packed"], axis=1)[:, :inn] - 8
    return q.float() * t["weight_scale"].float().repeat_interleave(group, dim=1)


def act_order_g_idx(inn, group, gen):
    """g_idx as GPTQ with desc_act writes it: the rows are processed in a permuted order `perm`
    and row i belongs to group (position of i in perm) / group, so each group has exactly
    `group` rows, scattered over the input."""
    perm = torch.randperm(inn, generator=gen)
    rank = torch.empty(inn, dtype=torch.int64)
    rank[perm] = torch.arange(inn)
    return (rank // group).to(torch.int32)


def gptq_quantize(w, group, sym, g_idx):
    """AutoGPTQ's quantizer (minmax, no error feedback, which does not matter here: the reference
    is whatever the stored tensors dequantize to) and v1 ("gptq") packing."""
    out, inn = w.shape
    n_groups = inn // group
    wt = w.float().t()                               # [in, out]
    scales = torch.empty(n_groups, out)
    zeros = torch.empty(n_groups, out, dtype=torch.int64)
    for g in range(n_groups):
        rows = wt[g_idx.long() == g]                 # [group, out]
        assert rows.shape[0] == group
        xmin = torch.clamp(rows.amin(0), max=0.0)
        xmax = torch.clamp(rows.amax(0), min=0.0)
        if sym:
            xmax = torch.maximum(xmin.abs(), xmax)
            xmin = -xmax
        scale = (xmax - xmin) / 15.0
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        scales[g] = scale.to(torch.float16).float()
        if sym:
            zeros[g] = 8
        else:
            # v1 stores zero - 1 in 4 bits, so zero 0 cannot be written (it would be -1):
            # keep zeros in 1..15.
            zeros[g] = torch.clamp(torch.round(-xmin / scales[g]), 1, 15).to(torch.int64)
    gi = g_idx.long()
    q = torch.clamp(torch.round(wt / scales[gi]) + zeros[gi], 0, 15).to(torch.int64)  # [in, out]
    return {"qweight": pack_nibbles(q.t().contiguous()).t().contiguous(),
            "qzeros": pack_nibbles(zeros - 1),
            "scales": scales.to(torch.float16),
            "g_idx": g_idx.clone()}


def gptq_dequantize(t):
    q = unpack_nibbles_a(t["qweight"], axis=0)               # [in, out]
    zeros = unpack_nibbles_a(t["qzeros"], axis=1) + 1        # [in/G, out]
    gi = t["g_idx"].long()
    w = (q - zeros[gi]).float() * t["scales"].float()[gi]    # [in, out]
    return w.t().contiguous()


def fp8_channel_quantize(w, scale_dtype):
    amax = w.float().abs().amax(1, keepdim=True)
    scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax)).to(scale_dtype)
    q = torch.clamp(w.float() / scale.float(), -FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return {"weight": q, "weight_scale": scale}


def fp8_channel_dequantize(t):
    return t["weight"].float() * t["weight_scale"].float()


SUFFIXES = {"ct_int4": ("weight_packed", "weight_scale", "weight_shape"),
            "gptq": ("qweight", "qzeros", "scales", "g_idx"),
            "ct_fp8": ("weight", "weight_scale")}


def quantized_modules(spec, keys):
    """The module names this format quantizes, from the bf16 checkpoint's keys."""
    mods = sorted(k.removesuffix(".weight") for k in keys if k.endswith(".weight"))
    mods = [m for m in mods if is_linear(m, spec["model_type"])]
    if spec["fmt"] == "gptq":
        # Every decoder Linear; routers, lm_head (and embeddings, norms) stay float.
        return [m for m in mods if m.rsplit(".", 1)[-1] in PROJECTIONS]
    return [m for m in mods if not ct_match(m, spec["ignore"])]


def quantization_config(spec):
    if spec["fmt"] == "gptq":
        return dict(quant_method="gptq", bits=4, group_size=spec["group"],
                    desc_act=spec["desc_act"], sym=spec["sym"], static_groups=False,
                    true_sequential=True, damp_percent=0.01, checkpoint_format="gptq")
    args = dict(actorder=None, block_structure=None, dynamic=False, group_size=None,
                num_bits=8, observer="minmax", observer_kwargs={}, strategy=None,
                symmetric=True, type="int")
    if spec["fmt"] == "ct_int4":
        weights = dict(args, num_bits=4, type="int", strategy="group", group_size=spec["group"])
        inputs, fmt = None, "pack-quantized"
    else:
        weights = dict(args, num_bits=8, type="float", strategy="channel")
        inputs = dict(args, num_bits=8, type="float", strategy="token", dynamic=True,
                      observer=None)
        fmt = "float-quantized"
    return dict(config_groups=dict(group_0=dict(input_activations=inputs,
                                                output_activations=None, targets=["Linear"],
                                                weights=weights)),
                format=fmt, ignore=spec["ignore"], kv_cache_scheme=None,
                quant_method="compressed-tensors", quantization_status="compressed")


def to_quantized_checkpoint(spec, model_dir):
    """Rewrites the bf16 checkpoint in `model_dir` in the format's published layout and returns
    the dequantized weights (checkpoint key -> f32 tensor) the reference runs on."""
    gen = torch.Generator().manual_seed(spec["seed_used"] + 7)
    dequantized = {}
    for fname in sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors")):
        path = os.path.join(model_dir, fname)
        tensors = safetensors.torch.load_file(path)
        targets = set(quantized_modules(spec, tensors.keys()))
        out = {}
        for name, t in tensors.items():
            module = name.removesuffix(".weight")
            if name.endswith(".weight") and module in targets:
                if spec["fmt"] == "ct_int4":
                    parts = ct_int4_quantize(t, spec["group"])
                    dequantized[name] = ct_int4_dequantize(parts, spec["group"])
                elif spec["fmt"] == "gptq":
                    inn = t.shape[1]
                    g_idx = (act_order_g_idx(inn, spec["group"], gen) if spec["desc_act"]
                             else (torch.arange(inn) // spec["group"]).to(torch.int32))
                    parts = gptq_quantize(t, spec["group"], spec["sym"], g_idx)
                    dequantized[name] = gptq_dequantize(parts)
                else:
                    parts = fp8_channel_quantize(t, spec["scale_dtype"])
                    dequantized[name] = fp8_channel_dequantize(parts)
                for suffix, value in parts.items():
                    out[f"{module}.{suffix}"] = value.contiguous()
            elif spec["fmt"] == "gptq" and t.dtype == torch.bfloat16:
                out[name] = t.to(torch.float16)   # Qwen's GPTQ releases are float16 throughout
            else:
                out[name] = t
        safetensors.torch.save_file(out, path, metadata={"format": "pt"})
    assert dequantized, "no weight was quantized"
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    if spec["fmt"] == "gptq":
        cfg["dtype"] = "float16"
    cfg["quantization_config"] = quantization_config(spec)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return dequantized


# ---------------------------------------------------------------------------------------------
# Path B: an independent reader of the saved files (raw safetensors bytes, numpy).

NP_DTYPES = {"I32": np.int32, "I64": np.int64, "F32": np.float32, "F16": np.float16,
             "BF16": np.uint16, "F8_E4M3": np.uint8}


def read_safetensors_raw(path):
    """{name: (dtype string, numpy array of the raw elements)} straight from the file bytes
    (BF16 as uint16 bit patterns, F8_E4M3 as uint8)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        arr = np.frombuffer(data[8 + n + a:8 + n + b], dtype=NP_DTYPES[info["dtype"]])
        out[name] = (info["dtype"], arr.reshape(info["shape"]))
    return out


def b_float(dtype, arr):
    """Widens a raw float array to float64: bf16 by bit placement, e4m3 by decoding its bits."""
    if dtype == "BF16":
        return (arr.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    if dtype == "F8_E4M3":
        sign = np.where(arr & 0x80, -1.0, 1.0)
        exp = ((arr >> 3) & 0xF).astype(np.int64)
        man = (arr & 0x7).astype(np.float64)
        assert not np.any((exp == 15) & (man == 7)), "NaN in an e4m3 weight"
        normal = (1.0 + man / 8.0) * np.exp2(exp - 7.0)
        subnormal = (man / 8.0) * np.exp2(-6.0)
        return sign * np.where(exp == 0, subnormal, normal)
    assert dtype in ("F32", "F16"), dtype
    return arr.astype(np.float64)


def b_nibbles(words):
    """Path B: int32 [..., n] -> uint8 [..., 8n] via the little-endian byte view (low nibble of
    byte b is element 2b, high nibble element 2b + 1)."""
    assert sys.byteorder == "little"
    by = np.ascontiguousarray(words).view(np.uint8)
    return np.stack([by & 0xF, by >> 4], axis=-1).reshape(*words.shape[:-1], -1)


def b_dequantize(spec, raw, module, cfg):
    if spec["fmt"] == "ct_int4":
        group = cfg["config_groups"]["group_0"]["weights"]["group_size"]
        sdt, shape = raw[module + ".weight_shape"]
        out, inn = (int(x) for x in shape)
        pdt, packed = raw[module + ".weight_packed"]
        scdt, scale = raw[module + ".weight_scale"]
        assert (sdt, pdt, scdt) == ("I64", "I32", "BF16"), (module, sdt, pdt, scdt)
        assert packed.shape == (out, inn // 8) and scale.shape == (out, inn // group)
        q = b_nibbles(packed)[:, :inn].astype(np.int64) - 8
        s = b_float(scdt, scale)
        return q * s[:, np.arange(inn) // group]
    if spec["fmt"] == "gptq":
        group = cfg["group_size"]
        qwdt, qweight = raw[module + ".qweight"]
        qzdt, qzeros = raw[module + ".qzeros"]
        scdt, scales = raw[module + ".scales"]
        gidt, g_idx = raw[module + ".g_idx"]
        assert (qwdt, qzdt, scdt, gidt) == ("I32", "I32", "F16", "I32"), module
        inn, out = qweight.shape[0] * 8, qweight.shape[1]
        assert qzeros.shape == (inn // group, out // 8) and scales.shape == (inn // group, out)
        assert g_idx.shape == (inn,) and g_idx.min() >= 0 and g_idx.max() < inn // group
        # Each group holds exactly `group` rows (act-order permutes, it does not resize).
        assert np.all(np.bincount(g_idx, minlength=inn // group) == group), module
        if not cfg["desc_act"]:
            assert np.array_equal(g_idx, np.arange(inn) // group), module
        q = b_nibbles(np.ascontiguousarray(qweight.T)).astype(np.int64)   # [out, in]
        zero = b_nibbles(qzeros).astype(np.int64) + 1                      # [in/G, out]
        if cfg["sym"]:
            assert np.all(zero == 8), module
        s = b_float(scdt, scales)
        return (q - zero[g_idx].T) * s[g_idx].T
    wdt, w = raw[module + ".weight"]
    scdt, scale = raw[module + ".weight_scale"]
    assert wdt == "F8_E4M3" and scale.shape == (w.shape[0], 1), module
    assert scdt == {torch.bfloat16: "BF16", torch.float32: "F32"}[spec["scale_dtype"]], module
    return b_float(wdt, w) * b_float(scdt, scale)


def self_check(spec, model_dir, twin_dir):
    """Re-reads the saved checkpoint, checks its layout against the config, dequantizes it with
    path B and requires bit-equality with the weights in the reference (twin) checkpoint, and
    that every other tensor is the same in both. Returns a summary for reference.json."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)["quantization_config"]
    raw, twin = {}, {}
    for fname in sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors")):
        raw.update(read_safetensors_raw(os.path.join(model_dir, fname)))
        twin.update(read_safetensors_raw(os.path.join(twin_dir, fname)))
    suffixes = SUFFIXES[spec["fmt"]]
    first = suffixes[0]
    quantized = sorted(k.removesuffix("." + first) for k, (dt, _) in raw.items()
                       if k.endswith("." + first) and (spec["fmt"] != "ct_fp8" or dt == "F8_E4M3"))
    # Which modules are quantized must follow from the config alone: for compressed-tensors the
    # Linear modules not matched by `ignore`; for GPTQ every decoder projection.
    all_modules = ([m.removesuffix(".weight") for m in twin if m.endswith(".weight")])
    from_config = dict(spec, ignore=cfg.get("ignore"))
    assert quantized == quantized_modules(from_config, [m + ".weight" for m in all_modules]), \
        "quantized set differs from what the config implies"
    used = set()
    zeros_seen = set()
    for m in quantized:
        for s in suffixes:
            assert f"{m}.{s}" in raw, f"{m}.{s} missing"
            used.add(f"{m}.{s}")
        dt, ref = twin[m + ".weight"]
        assert dt == "F32", (m, dt)
        mine = b_dequantize(spec, raw, m, cfg)
        assert mine.shape == ref.shape, (m, mine.shape, ref.shape)
        # Path B works in float64; every product here is exact in float32 except f32-scale FP8,
        # which float32 rounds once, as rounding the exact float64 product does.
        assert np.array_equal(mine.astype(np.float32), ref), f"{m}: path B differs"
        if spec["fmt"] == "gptq":
            zeros_seen.update(np.unique(b_nibbles(raw[m + ".qzeros"][1]) + 1).tolist())
    for k, (dt, arr) in raw.items():
        if k in used:
            continue
        tdt, tarr = twin[k]
        assert dt == tdt and np.array_equal(arr, tarr), f"{k} differs from the reference's"
        if k.endswith("e_score_correction_bias"):
            assert dt == "F32", k
        else:
            assert dt == ("F16" if spec["fmt"] == "gptq" else "BF16"), (k, dt)
    summary = dict(quantized_modules=len(quantized), example_quantized_module=quantized[0],
                   tensor_suffixes=list(suffixes))
    if spec["fmt"] == "gptq":
        summary["zero_points_seen"] = sorted(int(z) for z in zeros_seen)
    return summary


# ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="tests/golden directory")
    ap.add_argument("--dir", action="append", help="only these directories")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    base_specs = {s["dir"]: s for s in mg.SPECS}
    twins = {}
    real_build, real_load = mg.build, mg.load

    def build(spec, seed, out_root):
        model_dir = real_build(spec, seed, out_root)
        weights = to_quantized_checkpoint(dict(spec, seed_used=seed), model_dir)
        # The reference model: the same directory with the dequantized weights (f32) in place of
        # the quantized tensors, in a scratch directory next to it (never committed).
        twin = model_dir + "-dequantized"
        if os.path.isdir(twin):
            shutil.rmtree(twin)
        shutil.copytree(model_dir, twin)
        with open(os.path.join(twin, "config.json")) as f:
            cfg = json.load(f)
        cfg.pop("quantization_config")
        with open(os.path.join(twin, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        for fname in (f for f in os.listdir(twin) if f.endswith(".safetensors")):
            path = os.path.join(twin, fname)
            tensors = safetensors.torch.load_file(path)
            plain = {}
            for n, t in tensors.items():
                module, _, suffix = n.rpartition(".")
                if module + ".weight" in weights and suffix in SUFFIXES[spec["fmt"]]:
                    plain[module + ".weight"] = weights[module + ".weight"]
                else:
                    plain[n] = t
            assert all(k in plain for k in weights)
            safetensors.torch.save_file(plain, path, metadata={"format": "pt"})
        twins[model_dir] = twin
        return model_dir

    def load(model_dir, dtype):
        return real_load(twins.get(model_dir, model_dir), dtype)

    def check_layout(spec, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        assert cfg["architectures"] == [spec["arch"]], cfg["architectures"]
        assert cfg["dtype"] == ("float16" if spec["fmt"] == "gptq" else "bfloat16")
        files = sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors"))
        keys, f32 = [], []
        for fname in files:
            for k, (dt, _) in read_safetensors_raw(os.path.join(model_dir, fname)).items():
                keys.append(k)
                if dt == "F32":
                    f32.append(k)
        checked = self_check(spec, model_dir, twins[model_dir])
        expert_keys = sorted(k for k in keys if ".experts." in k and
                             k.endswith("." + SUFFIXES[spec["fmt"]][0]))
        qc = cfg["quantization_config"]
        return dict(config_keys=dict(rope="rope_parameters" if "rope_parameters" in cfg
                                     else "rope_scaling", dtype="dtype"),
                    safetensors_files=files, tensor_count=len(keys),
                    example_expert_key=expert_keys[0] if expert_keys else None,
                    float32_tensors=sorted(f32),
                    quant_method=qc["quant_method"], format=qc.get("format",
                                                                   qc.get("checkpoint_format")),
                    **checked)

    mg.build, mg.load, mg.check_layout = build, load, check_layout
    summary = {}
    for q_spec in SPECS:
        if args.dir and q_spec["dir"] not in args.dir:
            continue
        base = base_specs[q_spec["base"]]
        spec = dict(base, **{k: v for k, v in q_spec.items() if k not in ("base", "config")})
        spec["config"] = dict(base["config"], **q_spec["config"])
        ref = mg.make_one(spec, args.out)
        shutil.rmtree(os.path.join(args.out, spec["dir"], "model-dequantized"),
                      ignore_errors=True)
        summary[spec["dir"]] = ref["measured"]
        print(f"{spec['dir']}: {json.dumps(ref['measured'])}", flush=True)
        print(f"  layout: {json.dumps(ref['layout'])}", flush=True)
    path = os.path.join(args.out, "measured.json")
    measured = dict(torch=torch.__version__, architectures={})
    if os.path.exists(path):
        with open(path) as f:
            measured = json.load(f)
    measured["architectures"].update(summary)
    measured["architectures"] = {k: measured["architectures"][k]
                                 for k in sorted(measured["architectures"])}
    with open(path, "w") as f:
        f.write(mg.dump_json(measured))


if __name__ == "__main__":
    sys.exit(main())

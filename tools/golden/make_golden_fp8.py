#!/usr/bin/env python3
"""Builds FP8 golden data under tests/golden/<arch>_fp8/: a small random model made by
`transformers`, saved as DeepSeek-V3 and Qwen3-FP8 publish it (every linear weight of attention
and MLPs in float8_e4m3fn with an F32 `weight_scale_inv` per 128 x 128 block, partial blocks at
the edges; embeddings, norms, routers and lm_head in bf16; `quantization_config` in config.json),
and reference logits from transformers run on the *dequantized* weights (q.float() * scale,
block size from the config).

The dequantization is done here with torch, not by transformers: its CPU fallback for FP8 derives
the block size from tensor and scale shapes, which is wrong for partial edge blocks. Everything
else (prompts, greedy loop, margins, tolerances, reference.json) is make_golden.py's, so the C++
golden test reads these directories like the bf16 ones.

Run through tools/golden/make_golden.sh --fp8 (it makes the virtualenv with the pinned versions).
"""
import argparse
import json
import os
import shutil
import sys

import safetensors.torch
import torch
from transformers.quantizers.quantizers_utils import should_convert_module

import make_golden as mg

BLOCK = 128
FP8_MAX = 448.0

# The linear weights a published FP8 checkpoint quantizes (model/config/weight_layout.cc says
# the same): attention projections and every MLP projection, dense, shared or routed.
QUANTIZED_SUFFIXES = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight",
                      "q_a_proj.weight", "q_b_proj.weight", "kv_a_proj_with_mqa.weight",
                      "kv_b_proj.weight", "gate_proj.weight", "up_proj.weight",
                      "down_proj.weight")

# Widths with whole and partial 128-blocks: hidden 192 = 128 + 64, experts 160 wide.
WIDE = dict(hidden_size=192, moe_intermediate_size=160, intermediate_size=320)

SPECS = [
    # Qwen3-FP8 configs list their routers and lm_head in modules_to_not_convert; this one also
    # keeps layer 0's experts and layer 1's attention in bf16, matched by transformers' own
    # should_convert_module.
    dict(base="qwen3_moe", dir="qwen3_moe_fp8", seed=214,
         config=WIDE,
         keep=["lm_head", "model.layers.0.mlp.gate", "model.layers.1.mlp.gate",
               "model.layers.0.mlp.experts", "model.layers.1.self_attn"],
         exercises="Qwen3-MoE in FP8 as published (e4m3 weights, F32 128x128 block scales, "
                   "partial edge blocks: hidden 192, experts 160 wide; modules_to_not_convert "
                   "keeps layer 0's experts and layer 1's attention in bf16), reference on the "
                   "dequantized weights"),
    dict(base="deepseek_v3", dir="deepseek_v3_fp8", seed=206,
         config=dict(WIDE, q_lora_rank=144, kv_lora_rank=96),
         exercises="DeepSeek-V3 in FP8 as published (MLA projections and experts in e4m3 with "
                   "F32 128x128 block scales, partial blocks in every direction: hidden 192, "
                   "q_lora_rank 144, kv_a_proj_with_mqa 96 + 8 rows), reference on the "
                   "dequantized weights"),
]


def quantize(w):
    """Block-quantizes a 2-D float tensor: (e4m3 tensor, f32 scale_inv [ceil(R/128), ceil(C/128)])
    with scale_inv = amax / 448 per block (1 for an all-zero block)."""
    rows, cols = w.shape
    gr, gc = -(-rows // BLOCK), -(-cols // BLOCK)
    padded = torch.zeros(gr * BLOCK, gc * BLOCK, dtype=torch.float32)
    padded[:rows, :cols] = w.float()
    blocks = padded.view(gr, BLOCK, gc, BLOCK)
    amax = blocks.abs().amax(dim=(1, 3))
    scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    q = (blocks / scale[:, None, :, None]).view(gr * BLOCK, gc * BLOCK)[:rows, :cols]
    return q.to(torch.float8_e4m3fn), scale.to(torch.float32)


def dequantize(q, scale):
    """q.float() * its block's scale, with the 128 x 128 block size (partial blocks cropped)."""
    rows, cols = q.shape
    expanded = scale.repeat_interleave(BLOCK, 0).repeat_interleave(BLOCK, 1)[:rows, :cols]
    return q.to(torch.float32) * expanded


def to_fp8_checkpoint(model_dir, keep):
    """Rewrites the bf16 checkpoint in `model_dir` in the published FP8 layout and returns the
    dequantized weights (name -> f32 tensor) the reference runs on. Modules matched by `keep`
    (modules_to_not_convert) stay bf16."""
    dequantized = {}
    for fname in sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors")):
        path = os.path.join(model_dir, fname)
        tensors = safetensors.torch.load_file(path)
        out = {}
        for name, t in tensors.items():
            module = name.removesuffix(".weight")
            if (t.dim() == 2 and name.endswith(QUANTIZED_SUFFIXES)
                    and should_convert_module(module, keep or None)):
                q, scale = quantize(t)
                out[name] = q
                out[name + "_scale_inv"] = scale
                dequantized[name] = dequantize(q, scale)
            else:
                out[name] = t
        safetensors.torch.save_file(out, path, metadata={"format": "pt"})
    assert dequantized, "no weight was quantized"
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    cfg["quantization_config"] = dict(activation_scheme="dynamic", fmt="e4m3",
                                      quant_method="fp8", weight_block_size=[BLOCK, BLOCK])
    if keep:
        cfg["quantization_config"]["modules_to_not_convert"] = keep
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return dequantized


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="tests/golden directory")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    base_specs = {s["dir"]: s for s in mg.SPECS}
    dequantized_dirs = {}

    real_build, real_load, real_check = mg.build, mg.load, mg.check_layout

    def build(spec, seed, out_root):
        model_dir = real_build(spec, seed, out_root)
        weights = to_fp8_checkpoint(model_dir, spec.get("keep", []))
        # The reference model: the same directory with the dequantized weights, in a scratch
        # directory next to it (never committed), loadable by transformers as a plain model.
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
            plain = {n: (weights[n] if n in weights else t) for n, t in tensors.items()
                     if not n.endswith("_scale_inv")}
            safetensors.torch.save_file(plain, path, metadata={"format": "pt"})
        dequantized_dirs[model_dir] = twin
        return model_dir

    def load(model_dir, dtype):
        return real_load(dequantized_dirs.get(model_dir, model_dir), dtype)

    def check_layout(spec, model_dir):
        """The published FP8 layout: config.json with quantization_config; every quantized
        weight e4m3 with an F32 scale; the rest bf16 (e_score_correction_bias f32)."""
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        assert cfg["architectures"] == [spec["arch"]], cfg["architectures"]
        assert cfg["quantization_config"]["quant_method"] == "fp8"
        files = sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors"))
        fp8, scales, f32, keys = [], [], [], []
        for fname in files:
            for k, t in safetensors.torch.load_file(os.path.join(model_dir, fname)).items():
                keys.append(k)
                if t.dtype == torch.float8_e4m3fn:
                    fp8.append(k)
                elif t.dtype == torch.float32:
                    f32.append(k)
                    if k.endswith("_scale_inv"):
                        scales.append(k)
                    else:
                        assert k.endswith("e_score_correction_bias"), k
                else:
                    assert t.dtype == torch.bfloat16, (k, t.dtype)
        assert sorted(k + "_scale_inv" for k in fp8) == sorted(scales)
        expert_keys = sorted(k for k in keys if ".experts." in k)
        return dict(config_keys=dict(rope="rope_parameters" if "rope_parameters" in cfg
                                     else "rope_scaling",
                                     dtype="dtype" if "dtype" in cfg else "torch_dtype"),
                    safetensors_files=files, tensor_count=len(keys),
                    example_expert_key=expert_keys[0] if expert_keys else None,
                    float32_tensors=sorted(f32), fp8_tensors=len(fp8), block=[BLOCK, BLOCK])

    mg.build, mg.load, mg.check_layout = build, load, check_layout
    summary = {}
    for fp8_spec in SPECS:
        base = base_specs[fp8_spec["base"]]
        spec = dict(base, dir=fp8_spec["dir"], seed=fp8_spec["seed"],
                    config=dict(base["config"], **fp8_spec["config"]),
                    exercises=fp8_spec["exercises"], keep=fp8_spec.get("keep", []))
        ref = mg.make_one(spec, args.out)
        shutil.rmtree(os.path.join(args.out, spec["dir"], "model-dequantized"),
                      ignore_errors=True)
        summary[spec["dir"]] = ref["measured"]
        print(f"{spec['dir']}: {json.dumps(ref['measured'])}", flush=True)
    path = os.path.join(args.out, "measured.json")
    with open(path) as f:
        measured = json.load(f)
    measured["architectures"].update(summary)
    measured["architectures"] = {k: measured["architectures"][k]
                                 for k in sorted(measured["architectures"])}
    with open(path, "w") as f:
        f.write(mg.dump_json(measured))


if __name__ == "__main__":
    sys.exit(main())

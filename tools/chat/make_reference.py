#!/usr/bin/env python3
"""Renders the committed chat templates with Hugging Face transformers' own chat-template code.

Each case goes through transformers.utils.chat_template_utils.render_jinja_template, the function
apply_chat_template(tokenize=False) calls: the same sandboxed jinja2 environment, the same
message preprocessing (reasoning fields aliased to `thinking` and `reasoning_content`), messages,
tools (None when absent), documents (None), add_generation_prompt, the special tokens and any
extra kwargs. Using the library itself rather than a copy of its environment means a change in
transformers shows up as a reference diff.

strftime_now formats a fixed date (FIXED_NOW) so the output is reproducible; the C++ side gets the
same date through ChatRenderOptions.

Output: a JSON file with one entry per (template, conversation, options) case holding either the
expected rendering or the error jinja2 raised. The C++ test (tests/model/chat/) must reproduce
every rendering byte for byte and fail every case that failed here.

Usage: tools/chat/make_reference.sh  (a venv with pinned transformers and jinja2, then this).
"""
import argparse
import copy
import datetime
import json
import pathlib

import jinja2
import transformers
from transformers.utils import chat_template_utils

FIXED_NOW = datetime.datetime(2025, 3, 7, 14, 5, 9)

# Special tokens of each family (from the same tokenizer_config.json files as the templates).
TOKENS = {
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3_1": ("<|begin_of_text|>", "<|eot_id|>"),
    "mixtral": ("<s>", "</s>"),
    "qwen2": ("", "<|im_end|>"),
    "qwen2_5": ("", "<|im_end|>"),
    "qwen3": ("", "<|im_end|>"),
    "deepseek_v2": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "deepseek_v3": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "qwen3_coder": ("", "<|im_end|>"),
    "qwen3_5": ("", "<|im_end|>"),
    "kimi_k2": ("[BOS]", "[EOS]"),
    "gpt_oss": ("<|startoftext|>", "<|return|>"),
    "glm4_6": ("", "<|endoftext|>"),
    "minimax_m2": ("]~!b[", "[e~["),
}


class FixedClock(datetime.datetime):
    """Stands in for datetime in chat_template_utils so strftime_now() formats FIXED_NOW."""

    @classmethod
    def now(cls, tz=None):
        return FIXED_NOW


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city — 날씨 조회",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. \"Seoul\""},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7, "default": 1},
                "threshold": {"type": "number", "default": 0.5, "maximum": 100.0},
            },
            "required": ["city"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web.\nReturns a list of results.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                       "required": ["query"]},
    },
}


def conversations():
    """(name, messages, extra) triples; extra holds tools and template kwargs."""
    sys = {"role": "system", "content": "You are a helpful assistant."}
    yield "user_only", [{"role": "user", "content": "Hello!"}], {}
    yield "system_user", [sys, {"role": "user", "content": "What is 2+2?"}], {}
    yield "multi_turn", [
        sys,
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    ], {}
    yield "assistant_last", [
        {"role": "user", "content": "Say hi"},
        {"role": "assistant", "content": "Hi!"},
    ], {}
    yield "unicode_whitespace", [
        {"role": "system", "content": "  시스템: 한국어로 답하세요.\n"},
        {"role": "user", "content": "  你好 👋🏽 \"quoted\" \\back\\slash\ttab  \n\n"},
        {"role": "assistant", "content": "\n안녕하세요! 😀 café naïve\n"},
        {"role": "user", "content": "<|im_start|> is just text; {{ not a tag }} {% neither %}"},
    ], {}
    yield "empty_content", [{"role": "user", "content": ""}], {}
    yield "alternation_error", [
        {"role": "user", "content": "one"},
        {"role": "user", "content": "two"},
    ], {}
    yield "system_only", [sys], {}
    call_dict = {"id": "call12345", "type": "function",
                 "function": {"name": "get_weather",
                              "arguments": {"city": "Seoul", "unit": "celsius", "days": 2}}}
    call_str = {"id": "call12345", "type": "function",
                "function": {"name": "get_weather",
                             "arguments": "{\"city\": \"Seoul\", \"unit\": \"celsius\"}"}}
    tools = [WEATHER_TOOL, SEARCH_TOOL]
    yield "tools_declared", [sys, {"role": "user", "content": "Weather in Seoul?"}], {"tools": tools}
    for args_name, call in (("dict_args", call_dict), ("string_args", call_str)):
        yield "tool_roundtrip_" + args_name, [
            sys,
            {"role": "user", "content": "Weather in Seoul?"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call12345", "content": "{\"temp\": 21}"},
            {"role": "assistant", "content": "It is 21°C in Seoul."},
            {"role": "user", "content": "Thanks"},
        ], {"tools": tools}
    for suffix, call in (("", call_str), ("_dict_args", call_dict)):
        yield "tool_call_none_content" + suffix, [
            {"role": "user", "content": "Weather in Seoul?"},
            {"role": "assistant", "content": None, "tool_calls": [call, call]},
            {"role": "tool", "content": "sunny"},
            {"role": "tool", "content": "warm"},
        ], {"tools": tools}
    reasoning = [
        {"role": "user", "content": "What is 3*7?"},
        {"role": "assistant", "content": "<think>\n3 times 7 is 21.\n</think>\n\n21"},
        {"role": "user", "content": "And 4*5?"},
        {"role": "assistant", "content": "20", "reasoning_content": "\n4 times 5 is 20.\n"},
    ]
    yield "reasoning", reasoning, {}
    yield "content_parts", [
        {"role": "system", "content": [{"type": "text", "text": "Be terse."}]},
        {"role": "user", "content": [{"type": "text", "text": "First part."},
                                     {"type": "text", "text": "Second part."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Noted."}]},
        {"role": "user", "content": [{"type": "text", "text": "Go on."}]},
    ], {}
    yield "tool_result_named", [
        {"role": "user", "content": "Search MoE"},
        {"role": "assistant", "content": "Searching.", "tool_calls": [
            {"id": "call_a", "type": "function",
             "function": {"name": "search", "arguments": {"query": "MoE"}}}]},
        {"role": "tool", "tool_call_id": "call_a", "name": "search", "content": "[1] Mixtral"},
    ], {"tools": [SEARCH_TOOL]}
    yield "reasoning_then_user", reasoning + [{"role": "user", "content": "Thanks"}], {}
    yield "thinking_off", [{"role": "user", "content": "Quick answer?"}], {"enable_thinking": False}
    yield "thinking_on", [{"role": "user", "content": "Think hard."}], {"enable_thinking": True}
    yield "llama_builtin_tools", [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Search for MoE papers"},
        {"role": "assistant", "tool_calls": [
            {"type": "function", "function": {"name": "brave_search",
                                              "arguments": {"query": "mixture of experts"}}}]},
        {"role": "ipython", "content": {"results": ["a", "b"]}},
    ], {"tools": [SEARCH_TOOL], "builtin_tools": ["brave_search", "code_interpreter"],
        "tools_in_user_message": False, "date_string": "07 Mar 2025"}


def render(source, family, messages, extra, add_generation_prompt):
    bos, eos = TOKENS[family]
    kwargs = {k: v for k, v in extra.items() if k != "tools"}
    rendered, _ = chat_template_utils.render_jinja_template(
        conversations=[copy.deepcopy(messages)], tools=extra.get("tools"), documents=None,
        chat_template=source, add_generation_prompt=add_generation_prompt, bos_token=bos,
        eos_token=eos, **kwargs)
    return rendered[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", required=True, type=pathlib.Path)
    parser.add_argument("--out", required=True, type=pathlib.Path)
    args = parser.parse_args()
    chat_template_utils.datetime = FixedClock
    cases = []
    for path in sorted(args.templates.glob("*.jinja")):
        family = path.stem
        source = path.read_text(encoding="utf-8")
        for conv_name, messages, extra in conversations():
            for agp in (False, True):
                bos, eos = TOKENS[family]
                case = {
                    "name": f"{family}/{conv_name}/{'gen' if agp else 'nogen'}",
                    "template": path.name,
                    "messages": messages,
                    "add_generation_prompt": agp,
                    "bos_token": bos,
                    "eos_token": eos,
                    "tools": extra.get("tools"),
                    "kwargs": {k: v for k, v in extra.items() if k != "tools"},
                }
                try:
                    case["expected"] = render(source, family, messages, extra, agp)
                except jinja2.exceptions.SecurityError as e:  # e.g. list.append in the sandbox
                    case["failed"] = f"{type(e).__name__}: {e}"
                except jinja2.exceptions.UndefinedError as e:  # e.g. '+' on a missing key
                    case["failed"] = f"{type(e).__name__}: {e}"
                except jinja2.exceptions.TemplateError as e:  # raise_exception(msg)
                    case["raised"] = str(e)
                except Exception as e:  # a Python-level failure (TypeError ...) inside the template
                    case["failed"] = f"{type(e).__name__}: {e}"
                cases.append(case)
    out = {
        "generator": "tools/chat/make_reference.py",
        "transformers_version": transformers.__version__,
        "jinja2_version": jinja2.__version__,
        "strftime_now": FIXED_NOW.isoformat(),
        "cases": cases,
    }
    args.out.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    ok = sum("expected" in c for c in cases)
    print(f"wrote {len(cases)} cases ({ok} rendered, {len(cases) - ok} errors) to {args.out}")


if __name__ == "__main__":
    main()

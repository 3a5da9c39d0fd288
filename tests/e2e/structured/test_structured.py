"""Structured output end to end: real clients against `expertmesh serve` with a random model.

A random-weight model never closes a JSON string by itself: every constrained answer here ends
because the worker keeps the grammar completable within max_tokens (budget closing), so each
must parse, validate and finish with "stop". The model's chat template is replaced by Qwen3's
published one (tests/model/chat/data/templates/qwen3.jinja): it writes Hermes <tool_call>
blocks and may think, so tool calls and the reasoning prefix are exercised too; then the tool
checks run again on servers with the Qwen3-Coder, GLM-4.6, DeepSeek-V3 and Llama 3.1 templates.

Usage: test_structured.py SCRATCH EXPERTMESH_BIN SOURCE_DIR
Environment: STRUCTURED_E2E_SCHEMAS=glob narrows the corpus (debugging).
"""
import concurrent.futures
import enum
import fnmatch
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from typing import List, Literal, Optional

import httpx
import jsonschema
import openai
import pydantic

SCRATCH, EXPERTMESH, SOURCE_DIR = (pathlib.Path(a) for a in sys.argv[1:4])
CORPUS = SOURCE_DIR / "tests/data/structured"
TEMPLATES = SOURCE_DIR / "tests/model/chat/data/templates"
MODEL = "tiny"
# Enough for the corpus's largest minimal answers; the worker closes every answer within it.
MAX_TOKENS = 320
# (temperature, seed, stream) for every corpus schema: each temperature whole and streamed.
RUNS = [(0.0, 11, False), (0.0, 12, True), (0.7, 13, False), (0.7, 14, True), (1.0, 15, False),
        (1.0, 16, True)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`expertmesh serve` on loopback with the model made for this test."""

    def __init__(self, template="qwen3.jinja"):
        made = SCRATCH / "model"
        if not (made / "config.json").exists():
            subprocess.run([str(EXPERTMESH), "make-model", "--arch", "qwen3-moe", "--size", "tiny",
                            "--out", str(made), "--seed", "0", "--force"], check=True)
        # The made model with `template` as its chat template (the other files linked).
        self.model_dir = SCRATCH / f"model-{pathlib.Path(template).stem}"
        shutil.rmtree(self.model_dir, ignore_errors=True)
        self.model_dir.mkdir()
        for f in made.iterdir():
            if f.name != "tokenizer_config.json":
                (self.model_dir / f.name).symlink_to(f.resolve())
        config = json.loads((made / "tokenizer_config.json").read_text())
        config["chat_template"] = (TEMPLATES / template).read_text()
        (self.model_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
        self.http_port, self.grpc_port = free_port(), free_port()
        self.log = open(SCRATCH / f"serve-{pathlib.Path(template).stem}.log", "w")
        self.proc = subprocess.Popen(
            [str(EXPERTMESH), "serve", str(self.model_dir), "--http-port", str(self.http_port),
             "--grpc-port", str(self.grpc_port), "--threads", "2", "--kv-budget", "256MiB"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.http_port}"
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"expertmesh serve exited ({self.proc.returncode}); see "
                                   f"{self.log.name}")
            try:
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError("expertmesh serve did not get ready in 300 s")
        models = httpx.get(self.base + "/v1/models", timeout=10).json()
        global MODEL
        MODEL = models["data"][0]["id"]

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Checks:
    """Named checks; a failing one is recorded with its reason and the others still run."""

    def __init__(self):
        self.passed = 0
        self.failures = []

    def run(self, name, fn, *args):
        try:
            fn(*args)
            self.passed += 1
        except Exception as e:  # noqa: BLE001 - every failure is reported, then the run fails
            self.failures.append((name, f"{type(e).__name__}: {e}"))
            traceback.print_exc()


def expect(cond, message):
    if not cond:
        raise AssertionError(message)


# --- Pydantic models through client.chat.completions.parse -----------------------------------

class Color(str, enum.Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Address(pydantic.BaseModel):
    street: str
    city: str
    postcode: Optional[str]


class Person(pydantic.BaseModel):
    name: str
    age: int
    favorite: Color
    kind: Literal["human", "robot"]
    address: Address
    nicknames: List[str]


class Step(pydantic.BaseModel):
    explanation: str
    output: str


class MathAnswer(pydantic.BaseModel):
    steps: List[Step]
    final_answer: float


class Flags(pydantic.BaseModel):
    ok: bool
    level: Literal[1, 2, 3]
    note: Optional[str]


class Node(pydantic.BaseModel):
    label: str
    children: List["Node"]


def parse_pydantic(client, model_cls, seed, temperature):
    completion = client.chat.completions.parse(
        model=MODEL, messages=[{"role": "user", "content": f"Give me a {model_cls.__name__}."}],
        response_format=model_cls, max_tokens=MAX_TOKENS, seed=seed, temperature=temperature)
    choice = completion.choices[0]
    expect(choice.finish_reason == "stop", f"finish_reason {choice.finish_reason}")
    expect(isinstance(choice.message.parsed, model_cls),
           f"parsed is {type(choice.message.parsed)}: {choice.message.content!r}")


def json_object(client, seed):
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Answer in JSON."}],
        response_format={"type": "json_object"}, max_tokens=128, seed=seed, temperature=1.0)
    value = json.loads(r.choices[0].message.content)
    expect(isinstance(value, dict), f"not an object: {value!r}")
    expect(r.choices[0].finish_reason == "stop", r.choices[0].finish_reason)


# --- The schema corpus -----------------------------------------------------------------------

def validator_for(schema):
    cls = jsonschema.Draft202012Validator
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def corpus_schema(client, path, temperature, seed, stream):
    schema = json.loads(path.read_text())
    request = dict(
        model=MODEL, messages=[{"role": "user", "content": f"Fill in {path.stem}."}],
        response_format={"type": "json_schema",
                         "json_schema": {"name": path.stem[:64], "schema": schema}},
        max_tokens=MAX_TOKENS, seed=seed, temperature=temperature)
    if stream:
        text, finish = "", None
        for chunk in client.chat.completions.create(stream=True, **request):
            for c in chunk.choices:
                text += c.delta.content or ""
                finish = c.finish_reason or finish
    else:
        r = client.chat.completions.create(**request)
        text, finish = r.choices[0].message.content, r.choices[0].finish_reason
    expect(finish == "stop", f"finish_reason {finish}: {text!r}")
    value = json.loads(text)
    errors = sorted(validator_for(schema).iter_errors(value), key=str)
    expect(not errors, f"{text!r} does not validate: {errors[0].message if errors else ''}")


# --- Tools -----------------------------------------------------------------------------------

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "maxLength": 40},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7}},
            "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "The time in a timezone",
        "parameters": {"type": "object", "properties": {"timezone": {"type": "string",
                                                                     "maxLength": 32}},
                       "required": ["timezone"], "additionalProperties": False}}},
]
PARAMS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


def check_calls(calls):
    expect(calls, "no tool_calls")
    for call in calls:
        expect(call.function.name in PARAMS, f"unknown function {call.function.name}")
        args = json.loads(call.function.arguments)
        errors = list(validator_for(PARAMS[call.function.name]).iter_errors(args))
        expect(not errors, f"{call.function.arguments} invalid: {errors[0].message if errors else ''}")


def tools_round_trip(client, seed):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS,
                                       tool_choice="required", max_tokens=200, seed=seed)
    choice = r.choices[0]
    expect(choice.finish_reason == "tool_calls", f"finish_reason {choice.finish_reason}")
    check_calls(choice.message.tool_calls)
    # The assistant turn as clients replay it; Qwen3's template reads content as a string (it
    # fails on null in transformers too), so the empty text it had.
    messages.append({"role": "assistant", "content": choice.message.content or "",
                     "tool_calls": [c.model_dump() for c in choice.message.tool_calls]})
    for call in choice.message.tool_calls:
        messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'})
    for tool_choice in ("none", "auto"):
        final = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS,
                                               tool_choice=tool_choice, max_tokens=24, seed=seed)
        expect(final.choices[0].message.content is not None or tool_choice == "auto",
               f"no content with tool_choice {tool_choice}")


def tools_streamed(client, seed):
    names, args, finish = {}, {}, None
    for chunk in client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Time in Tokyo?"}], tools=TOOLS,
            tool_choice="required", max_tokens=200, seed=seed, stream=True):
        for c in chunk.choices:
            for t in c.delta.tool_calls or []:
                if t.function.name:
                    names[t.index] = t.function.name
                args[t.index] = args.get(t.index, "") + (t.function.arguments or "")
            finish = c.finish_reason or finish
    expect(finish == "tool_calls", f"finish_reason {finish}")
    expect(names, "no streamed tool calls")
    for i, name in names.items():
        errors = list(validator_for(PARAMS[name]).iter_errors(json.loads(args[i])))
        expect(not errors, f"{args[i]} invalid for {name}")


def named_tool(client, seed):
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Time?"}], tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}}, max_tokens=160,
        seed=seed)
    calls = r.choices[0].message.tool_calls
    check_calls(calls)
    expect(len(calls) == 1 and calls[0].function.name == "get_time",
           f"calls {[c.function.name for c in calls]}")
    expect(r.choices[0].finish_reason == "tool_calls", r.choices[0].finish_reason)


# --- regex, choice, grammar, completions -----------------------------------------------------

def guided(client, extra, check, completions=False, seed=5):
    if completions:
        r = client.completions.create(model=MODEL, prompt="Answer:", max_tokens=64, seed=seed,
                                      temperature=1.0, extra_body=extra)
        text, finish = r.choices[0].text, r.choices[0].finish_reason
    else:
        r = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Answer."}], max_tokens=64,
            seed=seed, temperature=1.0, extra_body=extra)
        text, finish = r.choices[0].message.content, r.choices[0].finish_reason
    expect(finish == "stop", f"finish_reason {finish}: {text!r}")
    expect(check(text), f"{text!r} does not match {extra}")


REGEX = r"[A-Z][a-z]{2,8}-[0-9]{3}"
CHOICES = ["yes", "no", "maybe later"]
GBNF = 'root ::= ("cat" | "dog") "-" [0-9] [0-9]?'


def guided_checks(checks, client):
    is_regex = lambda t: re.fullmatch(REGEX, t) is not None  # noqa: E731
    is_choice = lambda t: t in CHOICES  # noqa: E731
    is_gbnf = lambda t: re.fullmatch(r"(cat|dog)-[0-9][0-9]?", t) is not None  # noqa: E731
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    is_schema = lambda t: isinstance(json.loads(t).get("n"), int)  # noqa: E731
    cases = [
        ("guided_regex", {"guided_regex": REGEX}, is_regex),
        ("structured_outputs.regex", {"structured_outputs": {"regex": REGEX}}, is_regex),
        ("guided_choice", {"guided_choice": CHOICES}, is_choice),
        ("structured_outputs.choice", {"structured_outputs": {"choice": CHOICES}}, is_choice),
        ("guided_grammar", {"guided_grammar": GBNF}, is_gbnf),
        ("structured_outputs.grammar", {"structured_outputs": {"grammar": GBNF}}, is_gbnf),
        ("guided_json", {"guided_json": schema}, is_schema),
        ("structured_outputs.json", {"structured_outputs": {"json": json.dumps(schema)}},
         is_schema),
        ("structured_outputs.json_object", {"structured_outputs": {"json_object": True}},
         lambda t: isinstance(json.loads(t), dict)),
    ]
    for name, extra, check in cases:
        checks.run(f"chat {name}", guided, client, extra, check)
        checks.run(f"completions {name}", guided, client, extra, check, True)


# --- Refusals --------------------------------------------------------------------------------

def refused(base, body, reason, param=None):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 8,
            **body}
    r = httpx.post(base + "/v1/chat/completions", json=body, timeout=60)
    expect(r.status_code == 400, f"status {r.status_code}: {r.text}")
    error = r.json()["error"]
    expect(error["type"] == "invalid_request_error", error)
    expect(reason in error["message"], f"{reason!r} not in {error['message']!r}")
    if param is not None:
        expect(error.get("param") == param, f"param {error.get('param')!r}")


def refusal_checks(checks, base):
    for path in sorted((CORPUS / "invalid").glob("*.json")):
        reason = (CORPUS / "invalid" / f"{path.stem}.reason.txt").read_text().strip()
        text = path.read_text()
        try:
            schema = json.loads(text)
            body = {"response_format": {"type": "json_schema",
                                        "json_schema": {"name": "x", "schema": schema}}}
        except json.JSONDecodeError:
            body = {"guided_json": text}  # JSON text that is not JSON
        checks.run(f"refuses invalid/{path.name}", refused, base, body, reason)
    checks.run("refuses a bad regex", refused, base, {"guided_regex": "([a-z]"}, "guided_regex")
    checks.run("refuses bad GBNF", refused, base, {"guided_grammar": "root ::= ("},
               "guided_grammar")
    checks.run("refuses an unknown function", refused, base,
               {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
               "'nope'", "tool_choice")
    checks.run("refuses two constraints", refused, base,
               {"response_format": {"type": "json_object"}, "guided_regex": "a+"},
               "'response_format' and 'guided_regex' cannot be combined")
    checks.run("refuses a constraint with required tools", refused, base,
               {"tools": TOOLS, "tool_choice": "required", "guided_regex": "a+"},
               "cannot be combined", "tool_choice")


# --- gRPC ------------------------------------------------------------------------------------

def grpc_checks(checks, server):
    out = tempfile.mkdtemp(dir=SCRATCH)
    from grpc_tools import protoc
    import grpc_tools
    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    proto_dir = SOURCE_DIR / "proto"
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out}",
                      f"--grpc_python_out={out}",
                      str(proto_dir / "expertmesh/v1/inference.proto")])
    expect(rc == 0, "protoc failed")
    sys.path.insert(0, out)
    import grpc
    from expertmesh.v1 import inference_pb2 as pb, inference_pb2_grpc as pbg
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    stub = pbg.InferenceStub(channel)
    schema = json.loads((CORPUS / "schemas/strict_person.json").read_text())

    def json_schema():
        msgs = list(stub.Generate(pb.GenerateRequest(
            chat=pb.ChatPrompt(messages=[pb.ChatMessage(role="user", content="A person.")]),
            json_schema=json.dumps(schema), sampling=pb.SamplingParams(seed=3),
            stop=pb.StopCriteria(max_tokens=MAX_TOKENS)), timeout=300))
        expect(msgs[-1].finish_reason == pb.FINISH_REASON_STOP, msgs[-1].finish_reason)
        value = json.loads("".join(m.text for m in msgs))
        expect(not list(validator_for(schema).iter_errors(value)), value)

    def choice():
        msgs = list(stub.Generate(pb.GenerateRequest(
            text="Pick:", choice=pb.ChoiceList(choices=CHOICES),
            stop=pb.StopCriteria(max_tokens=16)), timeout=300))
        expect("".join(m.text for m in msgs) in CHOICES, msgs)

    def tools():
        chat = pb.ChatPrompt(
            messages=[pb.ChatMessage(role="user", content="Weather in Oslo?")],
            tools=[pb.Tool(name=t["function"]["name"], description=t["function"]["description"],
                           parameters=json.dumps(t["function"]["parameters"])) for t in TOOLS],
            tool_choice_function="get_weather")
        msgs = list(stub.Generate(pb.GenerateRequest(
            chat=chat, sampling=pb.SamplingParams(seed=4), stop=pb.StopCriteria(max_tokens=200)),
            timeout=300))
        calls = [c for m in msgs for c in m.tool_calls]
        expect(len(calls) == 1 and calls[0].name == "get_weather", calls)
        expect(not list(validator_for(PARAMS["get_weather"]).iter_errors(
            json.loads(calls[0].arguments))), calls[0].arguments)
        expect(msgs[-1].finish_reason == pb.FINISH_REASON_TOOL_CALLS, msgs[-1].finish_reason)

    def invalid():
        for req, reason in [
                (pb.GenerateRequest(text="x", json_schema='{"type": "array", "minItems": 2, '
                                                          '"maxItems": 1}'), "minItems"),
                (pb.GenerateRequest(text="x", regex="(a"), "regex"),
                (pb.GenerateRequest(chat=pb.ChatPrompt(
                    messages=[pb.ChatMessage(role="user", content="x")],
                    tools=[pb.Tool(name="f")], tool_choice_function="nope")), "'nope'")]:
            try:
                list(stub.Generate(req, timeout=60))
            except grpc.RpcError as e:
                expect(e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.code())
                expect(reason in e.details(), f"{reason!r} not in {e.details()!r}")
            else:
                raise AssertionError(f"accepted {req}")

    checks.run("grpc json_schema", json_schema)
    checks.run("grpc choice", choice)
    checks.run("grpc named tool call", tools)
    checks.run("grpc invalid constraints", invalid)
    channel.close()


# The other published call formats, each on a server of its own with that template: calls
# constrained by tool_choice are read back, valid for their schemas, and replayed.
FORMATS = ["qwen3_coder.jinja", "glm4_6.jinja", "deepseek_v3.jinja", "llama3_1.jinja"]


def format_checks(checks, template):
    server = Server(template)
    client = openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0,
                           timeout=600)
    try:
        checks.run(f"{template}: tools round trip", tools_round_trip, client, 31)
        checks.run(f"{template}: tools streamed", tools_streamed, client, 32)
        checks.run(f"{template}: named tool_choice", named_tool, client, 33)
        checks.run(f"{template}: json_schema", corpus_schema, client,
                   CORPUS / "schemas/strict_person.json", 1.0, 34, True)
    finally:
        server.stop()


def main():
    SCRATCH.mkdir(parents=True, exist_ok=True)
    started = time.time()
    server = Server()
    print(f"serve ready in {time.time() - started:.0f} s (model {MODEL})", flush=True)
    checks = Checks()
    client = openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0,
                           timeout=600)
    try:
        for i, model_cls in enumerate([Person, MathAnswer, Flags, Node]):
            for temperature in (0.0, 1.0):
                checks.run(f"parse {model_cls.__name__} t={temperature}", parse_pydantic, client,
                           model_cls, 100 + i, temperature)
        checks.run("json_object", json_object, client, 7)
        pattern = os.environ.get("STRUCTURED_E2E_SCHEMAS", "*")
        schemas = [p for p in sorted((CORPUS / "schemas").glob("*.json"))
                   if fnmatch.fnmatch(p.name, pattern)]
        expect(pattern != "*" or len(schemas) >= 50, f"only {len(schemas)} corpus schemas")
        corpus_started = time.time()
        # Four at a time: the worker batches them, as it would a service's traffic.
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = []
            for path in schemas:
                for temperature, seed, stream in RUNS:
                    name = f"schema {path.name} t={temperature} seed={seed} stream={stream}"
                    futures.append(pool.submit(checks.run, name, corpus_schema, client, path,
                                               temperature, seed, stream))
            for f in futures:
                f.result()
        print(f"corpus: {len(schemas)} schemas x {len(RUNS)} runs in "
              f"{time.time() - corpus_started:.0f} s", flush=True)
        checks.run("tools round trip", tools_round_trip, client, 21)
        checks.run("tools streamed", tools_streamed, client, 22)
        checks.run("named tool_choice", named_tool, client, 23)
        guided_checks(checks, client)
        refusal_checks(checks, server.base)
        grpc_checks(checks, server)
    finally:
        server.stop()
    for template in FORMATS:
        format_checks(checks, template)
    print(f"\n{checks.passed} checks passed, {len(checks.failures)} failed "
          f"in {time.time() - started:.0f} s")
    for name, why in checks.failures:
        print(f"FAILED {name}: {why[:600]}")
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Real clients against a real router process in front of a fake worker process.

The official `openai` SDK runs chat and completion requests, streaming and not; a grpcio client
built from stubs generated here from proto/ calls expertmesh.v1.Inference. Loopback only,
ports picked by the processes (port 0) and read from their output.
"""
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

import openai

SCRATCH, ROUTER, FAKE_WORKER, PROTO_DIR = sys.argv[1:5]


def read_line_matching(proc, pattern):
    """Reads the process's stdout until a line matches; returns the match."""
    for line in proc.stdout:
        m = re.search(pattern, line)
        if m:
            return m
    raise RuntimeError(f"process exited before printing {pattern!r}")


class ClientsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model_dir = os.path.join(SCRATCH, "model")
        subprocess.run([FAKE_WORKER, "--make-model", cls.model_dir], check=True)
        cls.worker = subprocess.Popen([FAKE_WORKER], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)
        worker_addr = read_line_matching(cls.worker, r"listening on (\S+)").group(1)
        cls.router = subprocess.Popen(
            [ROUTER, "--model-dir", cls.model_dir, "--model-name", "tiny", "--workers",
             worker_addr, "--http-port", "0", "--grpc-port", "0"],
            stdout=subprocess.PIPE, text=True)
        cls.http_port = int(read_line_matching(cls.router, r"HTTP listening on \S+:(\d+)").group(1))
        cls.grpc_port = int(read_line_matching(cls.router, r"gRPC listening on \S+:(\d+)").group(1))
        import openai
        cls.client = openai.OpenAI(base_url=f"http://127.0.0.1:{cls.http_port}/v1",
                                   api_key="unused", max_retries=0, timeout=60)

    @classmethod
    def tearDownClass(cls):
        cls.router.terminate()
        cls.router.wait(timeout=60)
        cls.worker.stdin.close()
        cls.worker.wait(timeout=60)

    def test_models(self):
        self.assertEqual([m.id for m in self.client.models.list()], ["tiny"])

    def test_models_retrieve(self):
        import openai
        model = self.client.models.retrieve("tiny")
        self.assertEqual((model.id, model.object, model.owned_by), ("tiny", "model", "expertmesh"))
        # When the checkpoint was written: after 2020, not in the future.
        self.assertGreater(model.created, 1577836800)
        self.assertLessEqual(model.created, time.time() + 5)
        with self.assertRaises(openai.NotFoundError):
            self.client.models.retrieve("no-such-model")

    def test_completion(self):
        prompt = "The quick brown fox jumps over the lazy dog."
        r = self.client.completions.create(model="tiny", prompt=prompt, max_tokens=64,
                                           temperature=0, stop=["lazy"])
        self.assertEqual(r.choices[0].text, "The quick brown fox jumps over the ")
        self.assertEqual(r.choices[0].finish_reason, "stop")
        self.assertGreater(r.usage.prompt_tokens, 0)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)

    def test_completion_stream(self):
        prompt = "Streaming text arrives in pieces."
        full = self.client.completions.create(model="tiny", prompt=prompt, max_tokens=6)
        chunks = list(self.client.completions.create(model="tiny", prompt=prompt, max_tokens=6,
                                                     stream=True))
        self.assertEqual("".join(c.choices[0].text for c in chunks), full.choices[0].text)
        self.assertEqual(chunks[-1].choices[0].finish_reason, "length")

    def test_chat(self):
        r = self.client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Say something"}],
            max_completion_tokens=5, n=2, seed=3)
        self.assertEqual(len(r.choices), 2)
        self.assertEqual(r.choices[0].message.role, "assistant")
        self.assertEqual(r.usage.completion_tokens, 10)

    def test_chat_stream_with_usage(self):
        kwargs = dict(model="tiny", messages=[{"role": "user", "content": "Count to three"}],
                      max_tokens=7)
        full = self.client.chat.completions.create(**kwargs)
        stream = self.client.chat.completions.create(
            **kwargs, stream=True, stream_options={"include_usage": True})
        text, usage = "", None
        for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage:
                usage = chunk.usage
        self.assertEqual(text, full.choices[0].message.content)
        self.assertEqual(usage.completion_tokens, 7)

    def test_errors(self):
        import openai
        with self.assertRaises(openai.NotFoundError):
            self.client.completions.create(model="other", prompt="x", max_tokens=1)
        with self.assertRaises(openai.BadRequestError) as e:
            self.client.completions.create(model="tiny", prompt="x", temperature=-3)
        self.assertIn("temperature", str(e.exception))

    def test_completion_defaults_and_echo(self):
        prompt = "Echo brings the prompt back."
        # Without max_tokens: 16 tokens, as OpenAI's and vLLM's completions.
        r = self.client.completions.create(model="tiny", prompt=prompt)
        self.assertEqual(r.usage.completion_tokens, 16)
        plain = self.client.completions.create(model="tiny", prompt=prompt, max_tokens=4)
        echoed = self.client.completions.create(model="tiny", prompt=prompt, max_tokens=4,
                                                echo=True)
        self.assertEqual(echoed.choices[0].text, prompt + plain.choices[0].text)
        chunks = list(self.client.completions.create(model="tiny", prompt=prompt, max_tokens=4,
                                                     echo=True, stream=True))
        self.assertEqual("".join(c.choices[0].text for c in chunks), echoed.choices[0].text)

    def test_echo_with_logprobs(self):
        prompt = "Echo brings the prompt back."
        plain = self.client.completions.create(model="tiny", prompt=prompt, max_tokens=4)
        r = self.client.completions.create(model="tiny", prompt=prompt, max_tokens=4, echo=True,
                                           logprobs=2)
        self.assertEqual(r.choices[0].text, prompt + plain.choices[0].text)
        lp = r.choices[0].logprobs
        # Prompt tokens first, then the 4 generated; the first prompt token has no logprob.
        n = len(lp.tokens)
        self.assertGreater(n, 4)
        self.assertEqual(len(lp.token_logprobs), n)
        self.assertEqual(len(lp.top_logprobs), n)
        self.assertEqual(len(lp.text_offset), n)
        self.assertIsNone(lp.token_logprobs[0])
        self.assertIsNone(lp.top_logprobs[0])
        for i in range(1, n):
            self.assertIsInstance(lp.token_logprobs[i], float)
            self.assertEqual(len(lp.top_logprobs[i]), 2)
        self.assertEqual(lp.text_offset[0], 0)
        for i in range(1, n):
            self.assertEqual(lp.text_offset[i], lp.text_offset[i - 1] + len(lp.tokens[i - 1]))
        # The fake worker scores prompt token i at -0.125 i (tests/router/fake_worker.h).
        self.assertAlmostEqual(lp.token_logprobs[1], -0.125)
        chunks = list(self.client.completions.create(model="tiny", prompt=prompt, max_tokens=4,
                                                     echo=True, logprobs=2, stream=True))
        streamed = [t for c in chunks if c.choices and c.choices[0].logprobs
                    for t in c.choices[0].logprobs.tokens]
        self.assertEqual(streamed, lp.tokens)
        self.assertEqual(chunks[0].choices[0].text, prompt)
        # vLLM's extra parameter comes back as its list in the choice.
        v = self.client.completions.create(model="tiny", prompt=prompt, max_tokens=1,
                                           extra_body={"prompt_logprobs": 1})
        scored = v.choices[0].model_extra["prompt_logprobs"]
        self.assertIsNone(scored[0])
        self.assertEqual(len(scored), n - 4)
        self.assertEqual(set(scored[1][next(iter(scored[1]))]), {"logprob", "rank", "decoded_token"})

    def test_unknown_role(self):
        import openai
        with self.assertRaises(openai.BadRequestError) as e:
            self.client.chat.completions.create(
                model="tiny", messages=[{"role": "wizard", "content": "hi"}], max_tokens=2)
        self.assertIn("wizard", str(e.exception))

    def test_grpc(self):
        out = tempfile.mkdtemp(dir=SCRATCH)
        from grpc_tools import protoc
        import grpc_tools
        include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        rc = protoc.main(["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={out}",
                          f"--grpc_python_out={out}",
                          os.path.join(PROTO_DIR, "expertmesh/v1/inference.proto")])
        self.assertEqual(rc, 0)
        sys.path.insert(0, out)
        import grpc
        from expertmesh.v1 import inference_pb2, inference_pb2_grpc
        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            stub = inference_pb2_grpc.InferenceStub(channel)
            info = stub.GetModelInfo(inference_pb2.GetModelInfoRequest(model="tiny"), timeout=30)
            self.assertEqual(info.architecture, "Qwen3MoeForCausalLM")
            prompt = "gRPC from Python"
            tok = stub.Tokenize(inference_pb2.TokenizeRequest(text=prompt), timeout=30)
            self.assertGreater(len(tok.token_ids), 4)
            req = inference_pb2.GenerateRequest(
                text=prompt, stop=inference_pb2.StopCriteria(max_tokens=4))
            msgs = list(stub.Generate(req, timeout=30))
            self.assertEqual(msgs[-1].usage.completion_tokens, 4)
            self.assertEqual(msgs[-1].usage.prompt_tokens, len(tok.token_ids))
            self.assertEqual(msgs[-1].finish_reason, inference_pb2.FINISH_REASON_LENGTH)
            # The fake worker echoes the prompt: the text is its first four tokens.
            self.assertEqual("".join(m.text for m in msgs), "".join(tok.tokens[:4]))
            with self.assertRaises(grpc.RpcError) as e:
                list(stub.Generate(inference_pb2.GenerateRequest(
                    text="x", sampling=inference_pb2.SamplingParams(top_p=0)), timeout=30))
            self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

            # Structured output (issue 19): the constraint oneof is accepted and compiled (the
            # fake worker echoes rather than enforcing it), and what cannot be met is
            # INVALID_ARGUMENT with the reason.
            msgs = list(stub.Generate(inference_pb2.GenerateRequest(
                text=prompt, json_schema='{"type": "object", "properties": {"a": '
                                         '{"type": "integer"}}}',
                stop=inference_pb2.StopCriteria(max_tokens=2)), timeout=30))
            self.assertEqual(msgs[-1].usage.completion_tokens, 2)
            list(stub.Generate(inference_pb2.GenerateRequest(
                text=prompt, choice=inference_pb2.ChoiceList(choices=["a", "b"]),
                stop=inference_pb2.StopCriteria(max_tokens=2)), timeout=30))
            user = inference_pb2.ChatMessage(role="user", content="hi")
            for req, reason in [
                    (inference_pb2.GenerateRequest(
                        text="x", json_schema='{"type": "array", "minItems": 3, "maxItems": 2}'),
                     "minItems"),
                    (inference_pb2.GenerateRequest(text="x", regex="[a-"), "regex"),
                    (inference_pb2.GenerateRequest(text="x", grammar="root ::= nowhere"),
                     "nowhere"),
                    (inference_pb2.GenerateRequest(chat=inference_pb2.ChatPrompt(
                        messages=[user], tools=[inference_pb2.Tool(name="f")],
                        tool_choice_function="g")), "'g'")]:
                with self.assertRaises(grpc.RpcError) as e:
                    list(stub.Generate(req, timeout=30))
                self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
                self.assertIn(reason, e.exception.details())

    def test_structured_output_fields(self):
        # The OpenAI SDK's response_format and vLLM's extra fields reach the router; bad ones are
        # 400s the SDK raises with the reason.
        r = self.client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2,
            response_format={"type": "json_object"})
        self.assertEqual(r.choices[0].finish_reason, "length")
        with self.assertRaises(openai.BadRequestError) as e:
            self.client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2,
                response_format={"type": "json_schema", "json_schema": {
                    "name": "x", "schema": {"type": "string", "minLength": 3, "maxLength": 1}}})
        self.assertIn("minLength", str(e.exception))
        with self.assertRaises(openai.BadRequestError) as e:
            self.client.completions.create(model="tiny", prompt="x", max_tokens=2,
                                           extra_body={"guided_regex": "a", "guided_choice": ["b"]})
        self.assertIn("cannot be combined", str(e.exception))


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]], verbosity=2)

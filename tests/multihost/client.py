#!/usr/bin/env python3
"""HTTP client for tests/multihost/run.sh (standard library only).

  client.py complete HOST PORT MODEL IDS MAX_TOKENS
      One greedy non-streaming /v1/completions request; prints one JSON line
      {"status": 200, "text": ..., "finish_reason": ..., "error": null, "elapsed": s}.
  client.py stream HOST PORT MODEL IDS MAX_TOKENS PROGRESS_FILE
      One greedy SSE stream; appends one line per token event to PROGRESS_FILE (so the caller
      can wait until the stream is live), then prints one JSON line
      {"status", "events", "chars", "error", "done", "finish_reason", "t_first", "t_end"}
      (times are Unix seconds, comparable with `date +%s.%N`).

  client.py get HOST PORT PATH [body]
      GET PATH; prints the status code (000 when unreachable), or with `body` the body.

IDS is a comma-separated list of prompt token ids. Every socket read has a timeout, so no call
hangs: a stream that stalls for READ_TIMEOUT_S (30 s) ends with error "client: read timeout".
"""
import http.client
import json
import socket
import sys
import time

READ_TIMEOUT_S = 30.0


def body(model, ids, max_tokens, stream):
    return json.dumps({
        "model": model,
        "prompt": [int(t) for t in ids.split(",")],
        "max_tokens": int(max_tokens),
        "temperature": 0,
        "ignore_eos": True,
        "stream": stream,
    })


def post(host, port, payload):
    conn = http.client.HTTPConnection(host, int(port), timeout=READ_TIMEOUT_S)
    conn.request("POST", "/v1/completions", payload, {"Content-Type": "application/json"})
    return conn, conn.getresponse()


def complete(host, port, model, ids, max_tokens):
    start = time.time()
    out = {"status": None, "text": None, "finish_reason": None, "error": None}
    try:
        conn, resp = post(host, port, body(model, ids, max_tokens, False))
        out["status"] = resp.status
        raw = resp.read()
        conn.close()
        data = json.loads(raw)
        if resp.status == 200:
            out["text"] = data["choices"][0]["text"]
            out["finish_reason"] = data["choices"][0].get("finish_reason")
        else:
            out["error"] = data.get("error", data)
    except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
        out["error"] = f"client: {type(e).__name__}: {e}"
    out["elapsed"] = round(time.time() - start, 3)
    print(json.dumps(out))


def stream(host, port, model, ids, max_tokens, progress_file):
    out = {"status": None, "events": 0, "chars": 0, "error": None, "done": False,
           "finish_reason": None, "t_first": None, "t_end": None}
    try:
        with open(progress_file, "a", buffering=1) as progress:
            conn, resp = post(host, port, body(model, ids, max_tokens, True))
            out["status"] = resp.status
            if resp.status != 200:
                out["error"] = resp.read().decode(errors="replace")
            else:
                while True:
                    line = resp.readline()
                    if not line:
                        break
                    line = line.strip()
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        out["done"] = True
                        break
                    event = json.loads(data)
                    if "error" in event:
                        out["error"] = event["error"]
                        continue
                    for choice in event.get("choices", []):
                        if choice.get("finish_reason"):
                            out["finish_reason"] = choice["finish_reason"]
                        text = choice.get("text") or ""
                        if not choice.get("finish_reason"):
                            out["events"] += 1
                            out["chars"] += len(text)
                            if out["t_first"] is None:
                                out["t_first"] = time.time()
                            progress.write(f"{time.time():.3f}\n")
            conn.close()
    except socket.timeout:
        out["error"] = "client: read timeout"
    except (OSError, http.client.HTTPException, ValueError) as e:
        if out["error"] is None:
            out["error"] = f"client: {type(e).__name__}: {e}"
    out["t_end"] = time.time()
    print(json.dumps(out), flush=True)


def get(host, port, path, what="status"):
    try:
        conn = http.client.HTTPConnection(host, int(port), timeout=2)
        conn.request("GET", path)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
    except (OSError, http.client.HTTPException):
        print("000")
        return
    if what == "body":
        sys.stdout.write(data.decode(errors="replace"))
    else:
        print(resp.status)


def main(argv):
    if len(argv) >= 4 and argv[0] == "get":
        get(*argv[1:5])
    elif len(argv) >= 6 and argv[0] == "complete":
        complete(*argv[1:6])
    elif len(argv) >= 7 and argv[0] == "stream":
        stream(*argv[1:7])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])

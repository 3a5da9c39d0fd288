#!/usr/bin/env python3
"""Summarises GoogleTest XML reports (--gtest_output=xml:FILE) for tools/gpu-check.sh.

Prints one line per report: "<name> tests=N passed=P failed=F skipped=S no_gpu=G", then the
failed cases and every skipped case with its reason (at most 30 of each). On the GPU machine a
case skipped because no GPU was seen ("no CUDA GPU on this machine", "no GPU on this machine",
the fixtures' words) means the GPU was not used: it counts against the run like a failure.
Cases that skip by design there ("needs 2 GPUs; this machine has 1", "this machine has a GPU",
"one small case per shape suffices") are listed with their reason and do not.

Exit status 0 when every report has at least one case, no failure and no skip for want of a
GPU; 1 otherwise; 2 for unreadable input.

  gtest_summary.py report1.xml report2.xml ...
"""
import os
import re
import sys
import xml.etree.ElementTree as ET

NO_GPU = re.compile(r"\bno (CUDA )?GPU\b", re.IGNORECASE)


def skip_reason(case) -> str:
    node = case.find("skipped")
    text = "" if node is None else (node.get("message") or node.text or "")
    # gtest prefixes the message with "file:line\n"; keep the reason itself.
    return text.strip().splitlines()[-1].strip() if text.strip() else "(no reason given)"


def summarise(path: str) -> tuple[str, bool]:
    name = os.path.splitext(os.path.basename(path))[0]
    root = ET.parse(path).getroot()
    failed, skipped, total, no_gpu = [], [], 0, 0
    for case in root.iter("testcase"):
        total += 1
        full = f"{case.get('classname')}.{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(full)
        elif case.get("result") == "skipped" or case.find("skipped") is not None:
            reason = skip_reason(case)
            if NO_GPU.search(reason):
                no_gpu += 1
                reason = "NO GPU: " + reason
            skipped.append(f"{full}: {reason}")
    passed = total - len(failed) - len(skipped)
    lines = [f"{name} tests={total} passed={passed} failed={len(failed)} "
             f"skipped={len(skipped)} no_gpu={no_gpu}"]
    lines += [f"  FAILED  {n}" for n in failed[:30]]
    lines += [f"  SKIPPED {n}" for n in skipped[:30]]
    return "\n".join(lines), total > 0 and not failed and no_gpu == 0


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    ok = True
    for path in sys.argv[1:]:
        try:
            text, good = summarise(path)
        except (OSError, ET.ParseError) as e:
            print(f"{path}: unreadable report ({e})")
            return 2
        print(text)
        ok = ok and good
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Checks the dependency rule between the project's folders (docs/architecture.md).

  check_layering.py includes ROOT
      Every #include "..." of the production folders against RULES: a folder may include only
      the folders listed for it (and itself, and third-party headers). Fails naming each
      offending line.
  check_layering.py links FILE (--forbid DIR ... | --require DIR ...)
      FILE lists the project libraries a program links, directly or not ("target source_dir"
      per line, written at configure time by cmake/ExpertmeshLayering.cmake). --forbid fails
      when one of them is built from DIR; --require fails when none is (a control that the
      check sees what it looks for).
"""
import pathlib
import re
import sys

# Which of our top-level folders each production folder may include. Data flows down:
# router and worker both build on model/ (config, tokenizer, the plan and the KV block hash
# they share) and proto/ (the wire contracts); worker runs the model on kernels/; kernels know
# nothing of the worker, and the router knows nothing of worker or kernels.
RULES = {
    "common": set(),
    "model": {"common"},
    "kernels": {"common", "model"},
    "worker": {"common", "model", "kernels", "proto", "expertmesh"},
    "router": {"common", "model", "proto", "expertmesh"},
}
# First path components that are ours (anything else is a third-party or generated header;
# generated protobuf headers are included as "expertmesh/..." and belong to proto/).
OURS = {"common", "model", "kernels", "worker", "router", "proto", "tools", "bench", "tests",
        "expertmesh"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
SOURCE_SUFFIXES = {".h", ".cc", ".cu", ".cuh"}


def check_includes(root):
    root = pathlib.Path(root)
    bad = []
    checked = 0
    for folder, allowed in RULES.items():
        for path in sorted((root / folder).rglob("*")):
            if path.suffix not in SOURCE_SUFFIXES:
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                m = INCLUDE.match(line)
                if not m or "/" not in m.group(1):
                    continue
                checked += 1
                top = m.group(1).split("/", 1)[0]
                if top in OURS and top != folder and top not in allowed:
                    bad.append(f"{path.relative_to(root)}:{number}: {folder}/ includes "
                               f"{m.group(1)} ({top}/ is not below {folder}/)")
    if checked == 0:
        print("FAIL: no includes found under", root)
        return 1
    for line in bad:
        print("FAIL:", line)
    if bad:
        return 1
    print(f"PASS: {checked} includes of {', '.join(RULES)} follow the dependency rule")
    return 0


def check_links(file, mode, dirs):
    entries = []
    for line in pathlib.Path(file).read_text().splitlines():
        if line.strip():
            target, _, where = line.partition(" ")
            entries.append((target, where.strip() or "."))
    if not entries:
        print("FAIL:", file, "lists no libraries")
        return 1
    hits = [(t, d) for t, d in entries if any(d == x or d.startswith(x + "/") for x in dirs)]
    if mode == "--forbid" and hits:
        for target, where in hits:
            print(f"FAIL: links {target} (built from {where}/)")
        return 1
    if mode == "--require" and not hits:
        print(f"FAIL: links nothing built from {', '.join(dirs)}, so the check is blind")
        return 1
    print(f"PASS: {len(entries)} project libraries linked; {mode[2:]} {' '.join(dirs)} holds "
          f"({len(hits)} from there)")
    return 0


def self_test():
    """The include check on a scratch tree with the two arrows this rule exists to stop."""
    import contextlib
    import io
    import tempfile
    quiet = contextlib.redirect_stdout(io.StringIO())  # the planted violations' own FAIL lines
    with tempfile.TemporaryDirectory() as tmp, quiet:
        root = pathlib.Path(tmp)
        for folder in RULES:
            (root / folder).mkdir()
        (root / "kernels" / "ok.h").write_text('#include "common/x.h"\n#include "absl/y.h"\n')
        (root / "router" / "ok.cc").write_text('#include "model/plan/kv_block_hash.h"\n')
        if check_includes(root) != 0:
            print("FAIL: self-test: a clean tree was refused", file=sys.stderr)
            return 1
        for folder, header in (("kernels", "worker/models/model.h"),
                               ("router", "worker/kv/kv_cache_manager.h")):
            bad = root / folder / "bad.cc"
            bad.write_text(f'#include "{header}"\n')
            if check_includes(root) == 0:
                print(f"FAIL: self-test: {folder}/ including {header} was not caught",
                      file=sys.stderr)
                return 1
            bad.unlink()
    print("PASS: self-test: both forbidden arrows are caught")
    return 0


def main(argv):
    if len(argv) == 2 and argv[1] == "self-test":
        return self_test()
    if len(argv) == 3 and argv[1] == "includes":
        return check_includes(argv[2])
    if len(argv) >= 5 and argv[1] == "links" and argv[3] in ("--forbid", "--require"):
        return check_links(argv[2], argv[3], [d.rstrip("/") for d in argv[4:]])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

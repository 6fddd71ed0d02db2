#!/usr/bin/python3
"""The folders are layers: check that each folder includes only the folders it
may (the picture in README "Source tree"), so that no include cycle between
folders can appear, and that no source file in src/ or transports/ grows past
MAX_LINES.  Run by ctest (lint.layers); exits non-zero naming every breach.

    check_layers.py SOURCE_DIR
"""
import os
import re
import sys

# folder -> the folders it may include (besides itself).  Lower layers first;
# a folder never includes one listed after it.
LAYERS = {
    "src/core": [],
    "src/config": ["src/core"],
    "src/tls": ["src/core"],
    "src/proto": ["src/core", "src/tls"],
    # the policy: the core reaches it only through the ops table the worker
    # plugs in (core.h dv_core_policy_ops_t), so core never includes it
    "src/policy": ["src/core", "src/config"],
    "src/upstream": ["src/core", "src/config", "src/tls", "src/proto"],
    "src/daemon": ["src/core", "src/config", "src/tls", "src/proto", "src/policy",
                   "src/upstream"],
    "transports": ["src/core", "src/config", "src/tls", "src/proto", "src/upstream",
                   "src/daemon"],
    "tools/dnsveil-doq": ["src/core", "src/config", "src/tls", "src/proto"],
}
# where the size rule holds
SIZED = ("src/", "transports/")
MAX_LINES = 1000

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def folder_of(path):
    return os.path.dirname(path)


def main(root):
    errors = []
    seen_folders = set()
    for top in ("src", "transports", "tools"):
        for dirpath, _dirs, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if not name.endswith((".c", ".h")):
                    continue
                path = os.path.relpath(os.path.join(dirpath, name), root)
                folder = folder_of(path)
                seen_folders.add(folder)
                if folder not in LAYERS:
                    errors.append("%s: folder %s is not a declared layer (tests/lint/"
                                  "check_layers.py, README \"Source tree\")" % (path, folder))
                    continue
                allowed = set(LAYERS[folder]) | {folder}
                with open(os.path.join(root, path), errors="replace") as f:
                    lines = f.readlines()
                if path.startswith(SIZED) and len(lines) > MAX_LINES:
                    errors.append("%s: %d lines (at most %d: split it by what it does)" % (
                        path, len(lines), MAX_LINES))
                for n, line in enumerate(lines, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    inc = m.group(1)
                    inc_folder = folder_of(inc)
                    if not inc_folder:
                        continue  # same-folder include without a path
                    if inc_folder not in allowed:
                        errors.append("%s:%d: includes %s: %s may not include %s" % (
                            path, n, inc, folder, inc_folder))
    for e in errors:
        print(e)
    print("%d folders checked, %d breaches" % (len(seen_folders), len(errors)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))

#!/usr/bin/env python3
"""The server's layers point one way: each module names only the layers below it.

Reads every `crate::…` path in server/src (including `use crate::{a, b}` groups) and fails if
a module names a layer above its own, or if a module below the web layer names axum or HTTP.
Run from the repository root: `python3 .ci/layers.py`.
"""
import pathlib
import re
import sys

# Lowest first. A module may name its own layer and those before it.
LAYERS = ["clock", "store", "audit", "accounts", "sync", "district", "web", "relay", "demo", "config", "app"]
# Crate-root helpers every layer may use (defined in lib.rs).
ROOT_ITEMS = {"lock"}
# Below this layer nothing may name axum, tower, hyper or the http crate.
WEB = LAYERS.index("web")

SRC = pathlib.Path("server/src")


def layer_of(path: pathlib.Path) -> str | None:
    first = path.relative_to(SRC).parts[0]
    name = first.removesuffix(".rs")
    return name if name in LAYERS else None


def named_modules(text: str) -> set[str]:
    names = set(re.findall(r"\bcrate::([a-z_]+)", text))
    for group in re.findall(r"\bcrate::\{([^}]*)\}", text, flags=re.S):
        names.update(re.findall(r"(?:^|[,{\s])([a-z_]+)", group))
    return names


def main() -> int:
    problems = []
    checked = 0
    for path in sorted(SRC.rglob("*.rs")):
        own = layer_of(path)
        if own is None:
            continue  # lib.rs and main.rs sit above every layer
        checked += 1
        text = path.read_text(encoding="utf-8")
        # Comments may mention anything.
        code = "\n".join(line.split("//", 1)[0] for line in text.splitlines())
        level = LAYERS.index(own)
        for name in sorted(named_modules(code)):
            if name in ROOT_ITEMS or name == "self":
                continue
            if name not in LAYERS:
                problems.append(f"{path}: names crate::{name}, which is no layer")
            elif LAYERS.index(name) > level:
                problems.append(f"{path}: layer {own} names crate::{name}, a layer above it")
        if level < WEB:
            for crate in ("axum", "tower", "hyper", "http"):
                if re.search(rf"\b{crate}::", code):
                    problems.append(f"{path}: layer {own} names {crate}, which only the web layer may")
    if checked == 0:
        problems.append("no module was checked: is this the repository root?")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"{checked} modules checked: every layer names only those below it ({' < '.join(LAYERS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run as a script (tests/fuzz/test_hostile_snapshots.py starts it, to measure its memory): Hypothesis mutates the
demo snapshot's objects — a field of the wrong type, a field removed, a huge value, a YAML alias bomb — and every
command that reads a source must end in exit 0 (or analyze's 1: findings) or 2 with one `error:` line naming the
file or the object, never a traceback. Exits 1 with Hypothesis's smallest failing example."""
from __future__ import annotations

import contextlib
import copy
import io
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.cli import main
from cluster.files import YAML_LOADER
from cluster.sources import DEMO_DIR

FILES = {p.name: [d for d in yaml.load_all(p.read_text(), Loader=YAML_LOADER) if d]
         for p in sorted(DEMO_DIR.glob("*.yaml"))}
OBJECTS = [(name, i) for name, docs in FILES.items() for i in range(len(docs))]
BOMB = "__meshstep_alias_bomb__"
ANCHORS = "{" + ", ".join(["x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"] + [
    f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]) + "}"
VALUES = st.one_of(
    st.sampled_from([[1, 2], "text", 7, None, {"a": 1}, True, 1.5, [], {}, [[["deep"]]], -1]),
    st.sampled_from(["x" * 5_000_000, 10 ** 40, ["v"] * 200_000, {f"k{i}": "v" for i in range(100_000)}]),
    st.just(BOMB),
)
COMMANDS = (["inventory"], ["analyze"], ["explain"], ["explain", "istiod"], ["status", "--format", "json"])


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in an object that could hold another value (keys of maps, items of lists)."""
    out = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        out.append((*prefix, k))
        out.extend(_paths(v, (*prefix, k)))
    return out


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, int, tuple, str, Any]:
    name, i = draw(st.sampled_from(OBJECTS))
    path = draw(st.sampled_from(_paths(FILES[name][i])))
    how = draw(st.sampled_from(["replace", "replace", "delete"]))
    return name, i, path, how, draw(VALUES) if how == "replace" else None


def _write(root: Path, name: str, i: int, path: tuple, how: str, value: Any) -> Path:
    docs = copy.deepcopy(FILES)
    obj = docs[name][i]
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    if how == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    if value == BOMB:
        obj["aaa-anchors"] = BOMB + "-anchors"  # sorts first: the anchors come before their aliases
    for file, objects in docs.items():
        text = yaml.safe_dump_all(objects, width=1 << 30)
        text = text.replace(f"aaa-anchors: {BOMB}-anchors", f"aaa-anchors: {ANCHORS}").replace(BOMB, "*a8")
        (root / file).write_text(text)
    return root / name


def _ref(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj['kind']} {meta['namespace'] + '/' if meta.get('namespace') else ''}{meta['name']}"


@settings(max_examples=int(sys.argv[1]) if len(sys.argv) > 1 else 12, deadline=None, database=None,
          suppress_health_check=list(HealthCheck), derandomize=len(sys.argv) > 2)
@given(mutations())
def check(mutation: tuple[str, int, tuple, str, Any]) -> None:
    name, i, path, how, value = mutation
    with tempfile.TemporaryDirectory(prefix="meshstep-fuzz-") as tmp:
        file = _write(Path(tmp), name, i, path, how, value)
        named = (str(file), _ref(FILES[name][i]))
        for command in COMMANDS:
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main([*command, "--source", tmp, *(["--db", f"sqlite:///{tmp}/state.db"]
                                                          if command[0] == "status" else [])])
            said = err.getvalue()
            allowed = (0, 1, 2) if command == ["analyze"] else (0, 2)
            assert code in allowed, (command, code, said[-2000:])
            if code == 2:
                assert said.startswith("error: ") and said.count("\n") == 1, (command, said[-2000:])
                assert any(n in said for n in named), (command, named, said)


if __name__ == "__main__":
    check()

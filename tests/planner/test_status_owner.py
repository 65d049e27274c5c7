"""Nothing outside planner/ moves a stage: read from the source, no module of the product outside the plan engine
assigns something's `status`, builds a Stage with one, or calls the store's `transition_stage` — except the store's
own write methods, which carry out what the engine decided. (Tests call the store directly: they test it.)"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("cluster", "telemetry", "analysis", "explain", "features", "state", "app")
# (module, function): the store writes what the engine decided; _put_plan_status sets a plan's status, not a stage's.
WRITERS = {("state/store.py", "transition_stage"), ("state/store.py", "_new_stage"),
           ("state/store.py", "_put_plan_status")}


class _Finder(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.function = ""
        self.found: list[str] = []

    def _say(self, node: ast.AST, what: str) -> None:
        if (self.path, self.function) not in WRITERS:
            self.found.append(f"{self.path}:{node.lineno}: {what}")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        outer, self.function = self.function, node.name
        self.generic_visit(node)
        self.function = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def _targets(self, node: ast.AST) -> None:
        for target in ast.walk(node):
            # An object setting its own `status` (an HTTP error's) is not moving a stage.
            if (isinstance(target, ast.Attribute) and target.attr == "status" and isinstance(target.ctx, ast.Store)
                    and ast.unparse(target.value) != "self"):
                self._say(target, f"assigns {ast.unparse(target)}")

    def visit_Assign(self, node: ast.Assign) -> None:
        for t in node.targets:
            self._targets(t)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._targets(node.target)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._targets(node.target)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name == "transition_stage":
            self._say(node, "calls transition_stage")
        elif name == "Stage" and any(k.arg == "status" for k in node.keywords):
            self._say(node, "builds a Stage with a status")
        elif name == "setattr" and len(node.args) > 1 and ast.unparse(node.args[1]) in ("'status'", '"status"'):
            self._say(node, "sets a status with setattr")
        self.generic_visit(node)


def stage_moves(path: str, source: str) -> list[str]:
    finder = _Finder(path)
    finder.visit(ast.parse(source))
    return finder.found


def test_nothing_outside_planner_moves_a_stage():
    found = [line for room in ROOMS for path in sorted((ROOT / room).rglob("*.py"))
             for line in stage_moves(str(path.relative_to(ROOT)), path.read_text())]
    assert found == []


def test_the_scan_sees_each_way_of_moving_a_stage():
    source = '''
def mark(store, stage, plan):
    stage.status = "done"
    stage.status, stage.version = "done", 2
    setattr(stage, "status", "done")
    store.transition_stage(stage.id, "done", "me", "")
    Stage(title="t", status="done")

def transition_stage(self, stage):
    stage.status = "done"
'''
    assert [line.split(": ", 1)[1] for line in stage_moves("app/views/x.py", source)] == [
        "assigns stage.status", "assigns stage.status", "sets a status with setattr", "calls transition_stage",
        "builds a Stage with a status", "assigns stage.status"]
    assert len(stage_moves("state/store.py", source)) == 5  # the store's own writer may

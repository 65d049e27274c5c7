"""The renderings of an explanation (explain.report): text, Markdown, DOT and JSON."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cluster.components import PEERS, Component
from explain.report import Graph, Link, RenderedCommand, Report

_PLANE_TITLES = {"control": "control plane", "data": "data plane", "addon": "addons", "external": "outside Istio"}


def to_dot(g: Graph) -> str:
    """Graphviz DOT text: one cluster per plane, edges labelled with port and protocol."""
    lines = ["digraph mesh {", "  rankdir=LR;", '  node [shape=box, style="rounded"];']
    for plane, title in _PLANE_TITLES.items():
        nodes = [n for n in g.nodes if n.plane == plane]
        if not nodes:
            continue
        lines.append(f'  subgraph "cluster_{plane}" {{')
        lines.append(f'    label="{title}";')
        style = ', style="dashed"' if plane == "external" else ""
        lines += [f'    "{n.id}" [label="{_dot_escape(n.label)}"{style}];' for n in nodes]
        lines.append("  }")
    for e in g.edges:
        lines.append(f'  "{e.source}" -> "{e.target}" [label="{_dot_escape(e.label + chr(10) + e.purpose)}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# ---------------------------------------------------------------- rendering


def to_dict(report: Report) -> dict[str, Any]:
    """The JSON-ready form of a report."""
    return {
        "source": report.source,
        "components": [{
            "component": s.component.id, "title": s.component.title, "plane": s.component.plane,
            "role": s.component.role, "docs": s.component.docs,
            "instances": [{"kind": c.kind, "namespace": c.namespace, "name": c.name, "recognised_by": c.reason}
                          for c in s.instances],
            "links": [_link_dict(li) for li in s.links],
            "commands": [_command_dict(c) for c in s.commands],
        } for s in report.summaries],
        "subjects": [{
            "kind": e.ref.kind, "namespace": e.ref.namespace, "name": e.ref.name,
            "component": e.component.id if e.component else None,
            "recognised_by": e.recognised_by,
            "in_mesh": e.mesh.in_mesh, "mesh_mode": e.mesh.mode, "mesh_reason": e.mesh.reason,
            "facts": list(e.facts),
            "dependents": [str(r) for r in e.dependents],
            "links": [_link_dict(li) for li in e.links],
            "commands": [_command_dict(c) for c in e.commands],
            "docs": e.component.docs if e.component else None,
        } for e in report.subjects],
        "graph": {"nodes": [{"id": n.id, "label": n.label, "plane": n.plane} for n in report.graph.nodes],
                  "edges": [{"from": e.source, "to": e.target, "port": e.port, "protocol": e.protocol,
                             "purpose": e.purpose} for e in report.graph.edges]},
    }


def _link_dict(li: Link) -> dict[str, Any]:
    return {"direction": "out" if li.outgoing else "in", "peer": li.peer, "port": li.port,
            "protocol": li.protocol, "purpose": li.purpose, "peer_instances": list(li.peer_instances)}


def _command_dict(c: RenderedCommand) -> dict[str, str]:
    return {"purpose": c.purpose, "command": c.command, "note": c.note}


@dataclass(frozen=True)
class Section:
    title: str
    lines: tuple[str, ...]
    code: bool = False  # lines are commands (code block), each after a `# purpose` comment line of its own


def sections(report: Report) -> list[tuple[str, list[Section]]]:
    """(heading, sections) per summary and subject: what both the markdown and the text renderings show."""
    out = []
    for s in report.summaries:
        c = s.component
        out.append((f"{c.title} ({c.plane} plane)" if c.plane != "addon" else f"{c.title} (addon)", [
            Section("What it does", (c.role,)),
            *_parts(c),
            Section("In this cluster", _capped([f"{i.kind} {i.namespace}/{i.name} — {i.reason}" for i in s.instances])),
            *_common(c, s.links, s.commands, "How to debug it",
                     f"# for {s.instances[0].namespace}/{s.instances[0].name}; the others alike"
                     if s.instances else ""),
        ]))
    for e in report.subjects:
        heading = f"{e.ref}: " + (e.component.title if e.component else "not an Istio component")
        secs = []
        if e.component:
            secs.append(Section("What it is", (e.component.role, f"recognised: {e.recognised_by}")))
            secs += _parts(e.component)
        if e.component is None or e.component.id == "sidecar" or e.component.plane == "addon":
            # For istiod, gateways and node agents "in the mesh" is not a question: they are the mesh.
            secs.append(Section("In the mesh?", (("yes" if e.mesh.in_mesh else "no") + f" — {e.mesh.reason}",)))
        if e.facts:
            secs.append(Section("In this cluster", e.facts))
        if e.component and e.component.id == "istiod":
            secs.append(Section(f"Pods that depend on it ({len(e.dependents)})",
                                _capped([str(r) for r in e.dependents]) or ("none",)))
        if e.component:
            secs += _common(e.component, e.links, e.commands, "How to check it")
        out.append((heading, secs))
    return out


# Beyond this many lines a list stops being read; the JSON output keeps every entry.
_LISTED = 50


def _capped(lines: list[str]) -> tuple[str, ...]:
    if len(lines) <= _LISTED:
        return tuple(lines)
    return (*lines[:_LISTED], f"… and {len(lines) - _LISTED} more (--format json lists them all)")


def _parts(c: Component) -> list[Section]:
    if not c.parts:
        return []
    return [Section("Its parts", tuple(f"{p.name} (port {', '.join(map(str, p.ports))}): {p.role}" for p in c.parts))]


def _common(c: Component, links: tuple[Link, ...], commands: tuple[RenderedCommand, ...],
            debug_title: str, debug_preface: str = "") -> list[Section]:
    secs = [
        Section("Ports", tuple(f"{p.port} {p.protocol}: {p.purpose}"
                               + (" (inside the pod only)" if p.local_only else "") for p in c.ports)),
        Section("Talks to", tuple(_link_line(li) for li in links) or ("nothing else in this cluster",)),
        Section("When it is down", c.when_down),
        Section("When it is misconfigured", c.misconfigured),
    ]
    if commands:
        lines = [line for cmd in commands
                 for line in (f"# {cmd.purpose}" + (f" ({cmd.note})" if cmd.note else ""), cmd.command)]
        secs.append(Section(debug_title, tuple(([debug_preface] if debug_preface else []) + lines), True))
    secs.append(Section("Docs", (c.docs,)))
    return secs


def _link_line(li: Link) -> str:
    peer = PEERS.get(li.peer, li.peer)
    if li.peer_instances:
        more = len(li.peer_instances) - 3
        shown = ", ".join(li.peer_instances[:3]) + (f" and {more} more" if more > 0 else "")
        peer += f" ({shown})"
    arrow = "→" if li.outgoing else "←"
    port = f"port {li.port} " if li.port is not None else ""
    return f"{arrow} {peer}: {port}{li.protocol}, {li.purpose}"


def _as_is(text: str) -> str:
    return text


def _fence(lines: tuple[str, ...]) -> str:
    """A code fence longer than any run of backticks in the lines, so that none of them closes it."""
    return "`" * max((len(run) + 1 for line in lines for run in re.findall("`+", line)), default=3)


def to_markdown(report: Report, escape: Callable[[str], str] = _as_is) -> str:
    """Markdown: one `##` heading per component or subject, then the graph as a dot code block. What the cluster
    says in a heading or a line goes through the surface's `escape` (app/safe.py); code blocks are literal."""
    out = [f"# Istio components — {escape(report.source)}", ""]
    for heading, secs in sections(report):
        out += [f"## {escape(heading)}", ""]
        for s in secs:
            out += [f"**{s.title}**", ""]
            if s.code:
                fence = _fence(s.lines)
                out += [f"{fence}sh", *s.lines, fence, ""]
            else:
                out += [*(f"- {escape(line)}" for line in s.lines), ""]
    if report.graph.nodes:
        dot = to_dot(report.graph).rstrip()
        fence = _fence((dot,))
        out += ["## Communication graph", "", f"{fence}dot", dot, fence, ""]
    return "\n".join(out)


def to_text(report: Report, escape: Callable[[str], str] = _as_is) -> str:
    """Plain text for a terminal: the same sections as markdown, without markup; each line through the surface's
    `escape` (app/safe.py)."""
    out = []
    for heading, secs in sections(report):
        heading = escape(heading)
        out += [heading, "=" * len(heading)]
        for s in secs:
            out.append(s.title.upper())
            # One line each: a newline in what the cluster says is escaped with it, never a line of its own.
            out += [f"  {escape(line)}" for line in s.lines]
            out.append("")
    return "\n".join(out)

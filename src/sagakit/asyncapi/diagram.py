"""A saga as a Mermaid flowchart: stages, parallel groups, pivot, compensations.

Solid edges run forward: ``start``, each stage in order (a parallel group
between a ``fork`` and a ``join`` node, inside a subgraph), ``succeeded``.
Each compensable step has a dashed ``undo`` edge to its compensation, and the
compensations are chained by dashed edges in reverse stage order down to
``compensated``, the order they run in. The pivot is a hexagon marked
``PIVOT``; a remote step shows its command and queue (and its
``on_timeout`` command; a command sent without a reply wait says so).
"""

from __future__ import annotations

from typing import Any

from sagakit.definition.remote import Remote
from sagakit.definition.saga import Saga, Step
from sagakit.definition.subsaga import SubSaga

PIVOT_MARK = "PIVOT: point of no return"


def _text(value: str) -> str:
    return value.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;")


def _remote(remote: Remote) -> str:
    text = f"command {_text(remote.command)}<br/>queue {_text(remote.destination)}"
    return text if remote.awaited else f"{text}<br/>no reply awaited"


def _label(step: Step) -> str:
    parts = [f"<b>{_text(step.name)}</b>"]
    if isinstance(step.action, Remote):
        parts.append(_remote(step.action))
        if step.action.on_timeout is not None:
            parts.append(f"on timeout: {_text(step.action.on_timeout.command)}")
    elif isinstance(step.action, SubSaga):
        parts.append(f"sub-saga {_text(step.action.saga.name)}")
    if step.pivot:
        parts.append(PIVOT_MARK)
    return "<br/>".join(parts)


def _undo(step: Step) -> str:
    what = step.compensate
    if isinstance(what, Remote):
        body = _remote(what)
    elif isinstance(what, SubSaga):
        body = f"roll back {_text(what.saga.name)}"
    else:
        body = _text(getattr(what, "__name__", type(what).__name__))
    return f"undo {_text(step.name)}<br/>{body}"


def mermaid(saga: Saga[Any]) -> str:
    """The flowchart source (``flowchart TD``), ending with a newline."""
    ids = {step.name: f"s{i}" for i, step in enumerate(saga)}
    lines = ["flowchart TD", f"    %% saga {_text(saga.name)}", '    start(("start"))']
    edges: list[str] = []
    draw = _graph if saga.graph.explicit else _stages
    draw(saga, ids, lines, edges)
    lines.append('    succeeded(("succeeded"))')
    lines.extend(edges)
    lines.extend(_compensations(saga, ids))
    lines.append("    classDef pivot stroke-width:4px")
    lines.append("    classDef undo stroke-dasharray:4 3")
    pivots = [ids[s.name] for s in saga if s.pivot]
    if pivots:
        lines.append(f"    class {','.join(pivots)} pivot")
    return "\n".join(lines) + "\n"


def _node(step: Step, node: str) -> str:
    shape = ("{{", "}}") if step.pivot else ("[", "]")
    return f'    {node}{shape[0]}"{_label(step)}"{shape[1]}'


def _stages(
    saga: Saga[Any], ids: dict[str, str], lines: list[str], edges: list[str]
) -> None:
    """A list of stages: a chain, parallel groups between fork and join."""
    previous = "start"
    for index, stage in enumerate(saga.stages):
        if len(stage) == 1:
            node = ids[stage[0].name]
            lines.append(_node(stage[0], node))
            edges.append(f"    {previous} --> {node}")
            previous = node
            continue
        fork, join = f"fork{index}", f"join{index}"
        lines.append(f'    subgraph parallel{index} ["parallel group"]')
        lines.append(f'        {fork}(("fork"))')
        for step in stage:
            lines.append(f'        {ids[step.name]}["{_label(step)}"]')
        lines.append(f'        {join}(("join"))')
        lines.append("    end")
        edges.append(f"    {previous} --> {fork}")
        edges.extend(f"    {fork} --> {ids[s.name]}" for s in stage)
        edges.extend(f"    {ids[s.name]} --> {join}" for s in stage)
        previous = join
    edges.append(f"    {previous} --> succeeded")


def _graph(
    saga: Saga[Any], ids: dict[str, str], lines: list[str], edges: list[str]
) -> None:
    """A saga declared with ``after``: one node per step, an edge per
    dependency, from ``start`` to the roots and from the last steps."""
    graph = saga.graph
    lines.extend(_node(saga.step(name), ids[name]) for name in graph.order)
    for name in graph.order:
        for dep in graph.deps[name] or ("start",):
            edges.append(f"    {ids.get(dep, dep)} --> {ids[name]}")
        if not graph.dependents[name]:
            edges.append(f"    {ids[name]} --> succeeded")


def _compensations(saga: Saga[Any], ids: dict[str, str]) -> list[str]:
    stages = [[s for s in stage if s.compensate is not None] for stage in saga.stages]
    stages = [stage for stage in stages if stage]
    if not stages:
        return []
    lines = ["    %% compensations run in reverse, from the failed stage back"]
    undo = {s.name: f"u{ids[s.name][1:]}" for stage in stages for s in stage}
    for stage in stages:
        for step in stage:
            lines.append(f'    {undo[step.name]}["{_undo(step)}"]:::undo')
    lines.append('    compensated(("compensated"))')
    for stage in stages:
        for step in stage:
            lines.append(f"    {ids[step.name]} -. undo .-> {undo[step.name]}")
    for later, earlier in zip(stages[::-1], stages[::-1][1:], strict=False):
        for a in later:
            lines.extend(f"    {undo[a.name]} -.-> {undo[b.name]}" for b in earlier)
    lines.extend(f"    {undo[s.name]} -.-> compensated" for s in stages[0])
    return lines

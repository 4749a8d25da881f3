"""Reading a training script without running it: calls, their arguments, and names bound by literal assignment.

Unsloth's notebooks write `lora_rank = 32` once and then `r = lora_rank, lora_alpha = lora_rank * 2`; they build
one config per stage (`SFTConfig` for a warm-up, `GRPOConfig` for the run) and pass one to each trainer. This
module evaluates only literals, names bound once at the top level to a literal, and arithmetic on those; a value
it cannot evaluate is reported as UNRESOLVED (its expression kept), never replaced by a default.
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass
from typing import Any

from loraplan.formats.base import FormatError


def parse(text: str, where: str) -> ast.Module:
    """The script's syntax tree, or one line naming the file and the line that does not parse."""
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError) as exc:
        line = getattr(exc, "lineno", None)
        raise FormatError(f"{where}{f':{line}' if line else ''}: not valid Python ({exc})") from exc

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Pow: operator.pow, ast.Mod: operator.mod}
MAX_POWER = 64  # `2 ** 10**9` must not hang the reader


@dataclass(frozen=True)
class Unresolved:
    """A value written as an expression loraplan does not evaluate."""

    source: str

    def __repr__(self) -> str:
        return f"Unresolved({self.source!r})"


class _CannotEvaluate(Exception):
    pass


def literal_names(tree: ast.Module) -> dict[str, Any]:
    """Top-level names bound exactly once, by plain assignment, to something `evaluate` can compute."""
    counts: dict[str, int] = {}
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign | ast.AugAssign) else []
        for target in targets:
            for name in ast.walk(target):
                if isinstance(name, ast.Name):
                    counts[name.id] = counts.get(name.id, 0) + 1
    env: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if counts.get(name) == 1:
                value = evaluate(node.value, env)
                if not isinstance(value, Unresolved):
                    env[name] = value
    return env


def evaluate(node: ast.AST, env: dict[str, Any]) -> Any:
    """The value of `node` from literals, bound names and arithmetic, or Unresolved(its source)."""
    try:
        return _evaluate(node, env, 0)
    except (_CannotEvaluate, ArithmeticError, TypeError, ValueError, RecursionError):
        return Unresolved(_source(node))


def _source(node: ast.AST) -> str:
    try:
        return ast.unparse(node)[:200]
    except (ValueError, RecursionError):
        return "<expression>"


def _evaluate(node: ast.AST, env: dict[str, Any], depth: int) -> Any:
    if depth > 50:
        raise _CannotEvaluate
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        raise _CannotEvaluate
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _evaluate(node.operand, env, depth + 1)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left, env, depth + 1), _evaluate(node.right, env, depth + 1)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right)):
            raise _CannotEvaluate
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_POWER:
            raise _CannotEvaluate
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        values = [_evaluate(e, env, depth + 1) for e in node.elts]
        return set(values) if isinstance(node, ast.Set) else values
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_evaluate(k, env, depth + 1): _evaluate(v, env, depth + 1) for k, v in zip(node.keys, node.values,
                                                                                         strict=True)}
    raise _CannotEvaluate


def call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def keyword_values(call: ast.Call, env: dict[str, Any]) -> dict[str, Any]:
    """Every keyword argument of `call`, evaluated (Unresolved where it cannot be)."""
    return {k.arg: evaluate(k.value, env) for k in call.keywords if k.arg is not None}


def calls(tree: ast.Module) -> list[ast.Call]:
    """Every call, in source order."""
    found = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    return sorted(found, key=lambda c: (c.lineno, c.col_offset))


def assigned_call(tree: ast.Module, name: str, before_line: int) -> ast.Call | None:
    """The call last assigned to `name` (`training_args = GRPOConfig(...)`) before line `before_line`."""
    found: ast.Call | None = None
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and node.lineno < before_line
                and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
                and (found is None or node.lineno > found.lineno)):
            found = node.value
    return found

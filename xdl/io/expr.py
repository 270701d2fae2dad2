"""Safe boolean expressions over a dataset's variables (``--mask "DQF == 0"``, ``--domain "land == 0"``).

The text is parsed with :mod:`ast` and walked node by node; nothing in it can run code.
"""

from __future__ import annotations

import ast
import json
import operator

from ..errors import InputError
from .open import open_input

__all__ = ["domain_argument", "mask_expression"]

_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
# Bounds that no real quality rule comes near; beyond them Python's own parser and the recursive
# walk below would fail with RecursionError/MemoryError instead of a message.
_MAX_EXPR_CHARS = 10_000
_MAX_EXPR_NODES = 5_000
_MAX_EXPR_DEPTH = 100
_ALLOWED_TEXT = ("dataset variable names, numbers, comparisons (== != < <= > >=), & (and), | (or), "
                 "~ (not) and parentheses, e.g. \"DQF == 0\" or \"(DQF == 0) & (Rad > 0)\"")


def _parse(expr, fail) -> ast.Expression:
    """``expr``'s syntax tree, refused (``fail(why)``) when it is no text, too long or too deep."""
    if not isinstance(expr, str):
        raise fail("must be a text")
    if len(expr) > _MAX_EXPR_CHARS:
        raise fail(f"is {len(expr):,} characters long, more than the {_MAX_EXPR_CHARS:,} allowed; "
                   "write a shorter rule (e.g. DQF < 2 instead of many == terms)")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as e:
        raise fail(f"not a valid expression ({e.msg})") from None
    except (RecursionError, MemoryError):
        raise fail(f"is nested too deeply (more than {_MAX_EXPR_DEPTH} levels)") from None
    nodes, stack = 0, [(tree, 1)]
    while stack:  # iteratively: the tree may be deeper than Python's recursion limit
        node, depth = stack.pop()
        nodes += 1
        if depth > _MAX_EXPR_DEPTH or nodes > _MAX_EXPR_NODES:
            raise fail(f"is nested too deeply or too long (at most {_MAX_EXPR_DEPTH} levels of operators "
                       f"and {_MAX_EXPR_NODES:,} terms); write a shorter rule")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return tree


def mask_expression(expr: str, ds, what: str = "--mask"):
    """Evaluate a small boolean expression over ``ds``'s variables, safely (no ``eval``).

    The expression is parsed with :mod:`ast` and walked node by node; only variable names,
    numbers, comparisons, ``& | ~`` and parentheses are allowed, so nothing in it can run code.

    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"DQF": ("x", np.array([0, 1, 0])), "Rad": ("x", np.array([1.0, 2.0, -1.0]))})
    >>> mask_expression("(DQF == 0) & (Rad > 0)", ds).values.tolist()
    [True, False, False]
    >>> mask_expression("__import__('os')", ds)
    Traceback (most recent call last):
    ...
    xdl.errors.InputError: --mask "__import__('os')": a function call is not allowed; use dataset variable names, ...
    """
    import numpy as np
    import xarray as xr

    def fail(why):
        shown = expr if not isinstance(expr, str) or len(expr) <= 120 else f"{expr[:100]}... ({len(expr):,} characters)"
        return InputError(f"{what} {json.dumps(shown)}: {why}; use {_ALLOWED_TEXT}.")

    tree = _parse(expr, fail)

    def is_bool(v):
        return getattr(v, "dtype", None) == bool or isinstance(v, (bool, np.bool_))

    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Name):
            if node.id not in ds.variables:
                raise fail(f"{node.id!r} is not a variable of the dataset (it has: "
                           f"{', '.join(map(str, ds.variables))})")
            return ds[node.id]
        if isinstance(node, ast.Constant):
            if isinstance(node.value, (int, float)):  # bool is an int too: True/False are fine
                return node.value
            raise fail(f"the constant {node.value!r} is not a number")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            return -walk(node.operand)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
            value = walk(node.operand)
            if not is_bool(value):
                raise fail("~ applies to a condition; write ~(DQF == 0)")
            return ~value
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr)):
            left, right = walk(node.left), walk(node.right)
            if not (is_bool(left) and is_bool(right)):
                # Python binds & tighter than ==: "A == 0 & B > 0" means "A == (0 & B) > 0".
                raise fail("& and | combine conditions; put each comparison in parentheses: (A == 0) & (B > 0)")
            return left & right if isinstance(node.op, ast.BitAnd) else left | right
        if isinstance(node, ast.Compare):
            if not all(type(op) in _COMPARE for op in node.ops):
                raise fail("only == != < <= > >= compare values (no 'in' or 'is')")
            result, left = None, walk(node.left)
            for op, comp in zip(node.ops, node.comparators):
                right = walk(comp)
                try:
                    part = _COMPARE[type(op)](left, right)
                except TypeError:  # e.g. a time variable against a number: no traceback (probe)
                    raise fail(f"{ast.unparse(node)} compares values of kinds that cannot be compared (a date "
                               "or time against a number?)") from None
                result = part if result is None else result & part
                left = right
            return result
        kinds = {ast.Call: "a function call", ast.Attribute: "attribute access", ast.Subscript: "indexing",
                 ast.BoolOp: "'and'/'or' (use & and | with parentheses)", ast.Lambda: "a lambda",
                 ast.BinOp: "arithmetic"}
        why = next((v for k, v in kinds.items() if isinstance(node, k)), f"{type(node).__name__} syntax")
        raise fail(f"{why} is not allowed")

    value = walk(tree)
    if not isinstance(value, xr.DataArray) or value.dtype != bool:
        raise fail("the expression must be a condition on variables, such as DQF == 0")
    return value


def domain_argument(text, ds, domain_file=None):
    """``--domain``: "auto", "none", or a rule over ``ds``'s variables; with ``--domain-file``, over
    that file's variables (e.g. a land mask kept apart), matched to the grid by coordinate labels."""
    if domain_file is not None:
        if text is None or text in ("auto", "none"):
            raise InputError(f"--domain-file {domain_file}: give --domain a rule over its variables, "
                             "e.g. --domain-file mask.nc --domain 'land == 0'.")
        return mask_expression(text, open_input(domain_file, None), f"--domain (over {domain_file})")
    if text is None or text == "auto":
        return "auto"
    if text == "none":
        return None
    return mask_expression(text, ds, "--domain")

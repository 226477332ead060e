"""JSON Patch (RFC 6902) over plain JSON values: add, remove, replace, move, copy, test.

All or nothing: the operations run on a copy, and the first that cannot apply raises
PatchError naming it (its index and path), leaving the original untouched. Pointers follow
RFC 6901 ("~1" is "/", "~0" is "~"). `test` compares as JSON does: 1 equals 1.0, true is
not 1, and objects compare without regard to key order.
"""

from __future__ import annotations

import copy
import re
from typing import Any

OPERATIONS = frozenset({"add", "remove", "replace", "move", "copy", "test"})
MAX_OPERATIONS = 1000
_INDEX = re.compile(r"^(0|[1-9][0-9]{0,8})$")


class PatchError(ValueError):
    """A patch that is not well formed, or an operation that cannot apply to this document."""


def _pointer(text: Any, where: str) -> list[str]:
    if type(text) is not str or (text and not text.startswith("/")):
        raise PatchError(f"{where}: a JSON Pointer is empty or starts with /")
    if text == "":
        return []
    return [part.replace("~1", "/").replace("~0", "~") for part in text[1:].split("/")]


def _child(node: Any, token: str, where: str) -> Any:
    if type(node) is dict:
        if token not in node:
            raise PatchError(f"{where}: no member {token!r}")
        return node[token]
    if type(node) is list:
        if not _INDEX.match(token) or int(token) >= len(node):
            raise PatchError(f"{where}: no element {token!r} in an array of {len(node)}")
        return node[int(token)]
    raise PatchError(f"{where}: {token!r} is inside a value that is neither an object nor an array")


def _get(document: Any, tokens: list[str], where: str) -> Any:
    node = document
    for token in tokens:
        node = _child(node, token, where)
    return node


def _add(document: Any, tokens: list[str], value: Any, where: str) -> Any:
    if not tokens:
        return value
    parent = _get(document, tokens[:-1], where)
    last = tokens[-1]
    if type(parent) is dict:
        parent[last] = value
    elif type(parent) is list:
        if last == "-":
            parent.append(value)
        elif _INDEX.match(last) and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise PatchError(f"{where}: {last!r} is not an index of an array of {len(parent)} (or -)")
    else:
        raise PatchError(f"{where}: the parent is neither an object nor an array")
    return document


def _remove(document: Any, tokens: list[str], where: str) -> Any:
    if not tokens:
        raise PatchError(f"{where}: the whole document cannot be removed")
    parent = _get(document, tokens[:-1], where)
    _child(parent, tokens[-1], where)  # must exist
    if type(parent) is dict:
        del parent[tokens[-1]]
    else:
        del parent[int(tokens[-1])]
    return document


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value (but a boolean is not a number), arrays in order, objects by members."""
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    if type(a) is list and type(b) is list:
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict and type(b) is dict:
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _operation(document: Any, operation: Any, where: str) -> Any:
    if type(operation) is not dict:
        raise PatchError(f"{where}: an operation is a JSON object")
    name = operation.get("op")
    if name not in OPERATIONS:
        raise PatchError(f"{where}: op must be one of {', '.join(sorted(OPERATIONS))}")
    path = _pointer(operation.get("path"), f"{where} path")
    if name in ("add", "replace", "test") and "value" not in operation:
        raise PatchError(f"{where}: {name} needs a value")
    value = copy.deepcopy(operation.get("value"))
    if name == "add":
        return _add(document, path, value, where)
    if name == "remove":
        return _remove(document, path, where)
    if name == "replace":
        _get(document, path, where)  # must exist
        return _add(_remove(document, path, where), path, value, where) if path else value
    if name == "test":
        if not json_equal(_get(document, path, where), value):
            raise PatchError(f"{where}: test failed at {operation['path']}")
        return document
    source = _pointer(operation.get("from"), f"{where} from")
    moved = copy.deepcopy(_get(document, source, where))
    if name == "move":
        if path[: len(source)] == source and len(path) > len(source):
            raise PatchError(f"{where}: a value cannot be moved into itself")
        document = _remove(document, source, where)
    return _add(document, path, moved, where)


def patch_apply(document: Any, operations: Any) -> Any:
    """The document after the patch (a new value; `document` is not changed); PatchError on the first failure."""
    if type(operations) is not list:
        raise PatchError("a JSON Patch is an array of operations")
    if len(operations) > MAX_OPERATIONS:
        raise PatchError(f"at most {MAX_OPERATIONS} operations")
    result = copy.deepcopy(document)
    for index, operation in enumerate(operations):
        result = _operation(result, operation, f"operation {index}")
    return result

"""Key-level differences between two JSON values (pure: values in, changes out).

:func:`diff_json` lists each place where two parsed JSON documents differ, as a
:class:`JsonChange` with the path of keys that leads there, the operation and the old and new
values::

    weights.relevance: 0.42 -> 0.57
    rules[3]: removed "never deploy on Fridays"
    rules[4]: added "ask before deleting"

Objects are compared key by key (key order does not matter). Lists are aligned with
:class:`difflib.SequenceMatcher` over the canonical form of their items, so one item inserted at
the front is one ``added`` change, not a change at every index; items in a replaced stretch are
paired in order and compared key by key, and the rest of the longer side is added or removed.
Indices of ``removed`` items are positions in the old list; those of ``added`` and ``changed``
items are positions in the new list. Values of different types differ (``1``, ``1.0`` and
``true`` are three values), as JSON text would. The walk keeps an explicit stack, so deep
documents do not hit Python's recursion limit.

Paths: object keys that look like identifiers are joined with dots (``a.b_c``), other keys are
quoted (``a["x.y"]``), list indices are ``[n]``; the document itself is ``(root)``.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

CHANGED = "changed"
ADDED = "added"
REMOVED = "removed"

Key = str | int
_PLAIN_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_$-]*\Z")
SHOW_LIMIT = 80  # characters of a value shown in a one-line description


def canonical(value: Any) -> str:
    """The canonical text of a JSON value: equal text == equal value (types included)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def format_keys(keys: tuple[Key, ...]) -> str:
    """``("weights", "relevance")`` -> ``weights.relevance``; ``("rules", 3)`` -> ``rules[3]``."""
    if not keys:
        return "(root)"
    out: list[str] = []
    for key in keys:
        if isinstance(key, int):
            out.append(f"[{key}]")
        elif _PLAIN_KEY.match(key):
            out.append(f".{key}" if out else key)
        else:
            out.append(f"[{json.dumps(key, ensure_ascii=False)}]")
    return "".join(out)


def show_value(value: Any, limit: int = SHOW_LIMIT) -> str:
    """A JSON value on one line, shortened to ``limit`` characters."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class JsonChange:
    """One difference: ``op`` is changed, added or removed; ``old``/``new`` hold the values
    (``old`` is unset for added, ``new`` for removed; ``None`` there is JSON ``null``)."""

    keys: tuple[Key, ...]
    op: str
    old: Any = None
    new: Any = None

    @property
    def path(self) -> str:
        return format_keys(self.keys)

    def describe(self) -> str:
        if self.op == ADDED:
            return f"{self.path}: added {show_value(self.new)}"
        if self.op == REMOVED:
            return f"{self.path}: removed {show_value(self.old)}"
        return f"{self.path}: {show_value(self.old)} -> {show_value(self.new)}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "keys": list(self.keys), "op": self.op}
        if self.op != ADDED:
            out["old"] = self.old
        if self.op != REMOVED:
            out["new"] = self.new
        return out


@dataclass(frozen=True)
class _Compare:
    keys: tuple[Key, ...]
    old: Any
    new: Any


def _compare_dicts(keys: tuple[Key, ...], old: dict[str, Any], new: dict[str, Any]) -> list[_Compare | JsonChange]:
    out: list[_Compare | JsonChange] = []
    for key, value in old.items():
        if key in new:
            out.append(_Compare((*keys, key), value, new[key]))
        else:
            out.append(JsonChange((*keys, key), REMOVED, old=value))
    for key, value in new.items():
        if key not in old:
            out.append(JsonChange((*keys, key), ADDED, new=value))
    return out


def _compare_lists(keys: tuple[Key, ...], old: list[Any], new: list[Any]) -> list[_Compare | JsonChange]:
    out: list[_Compare | JsonChange] = []
    matcher = difflib.SequenceMatcher(None, [canonical(v) for v in old], [canonical(v) for v in new],
                                      autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        paired = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        for k in range(paired):
            out.append(_Compare((*keys, j1 + k), old[i1 + k], new[j1 + k]))
        for i in range(i1 + paired, i2):
            out.append(JsonChange((*keys, i), REMOVED, old=old[i]))
        for j in range(j1 + paired, j2):
            out.append(JsonChange((*keys, j), ADDED, new=new[j]))
    return out


def diff_json(old: Any, new: Any) -> Iterator[JsonChange]:
    """The changes from JSON value ``old`` to ``new``, in document order (old keys first)."""
    stack: list[_Compare | JsonChange] = [_Compare((), old, new)]
    while stack:
        item = stack.pop()
        if isinstance(item, JsonChange):
            yield item
            continue
        a, b = item.old, item.new
        if isinstance(a, dict) and isinstance(b, dict):
            work = _compare_dicts(item.keys, a, b)
        elif isinstance(a, list) and isinstance(b, list):
            work = _compare_lists(item.keys, a, b)
        elif type(a) is type(b) and canonical(a) == canonical(b):
            continue
        else:
            work = [JsonChange(item.keys, CHANGED, old=a, new=b)]
        stack.extend(reversed(work))


def parse_json_lines(text: str) -> list[Any]:
    """A JSON-lines document as a list of values (blank lines skipped); ``ValueError`` names
    the first line that does not parse."""
    values: list[Any] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{exc.msg} at line {number} column {exc.colno}") from None
    return values

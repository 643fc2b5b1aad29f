"""Unit tests for snapstore.view.jsondiff: key-level changes, list alignment, paths, JSON lines."""

from __future__ import annotations

import json

import pytest

from snapstore.view.jsondiff import (
    ADDED,
    CHANGED,
    REMOVED,
    JsonChange,
    diff_json,
    format_keys,
    parse_json_lines,
    show_value,
)


def described(old: object, new: object) -> list[str]:
    return [c.describe() for c in diff_json(old, new)]


def test_equal_documents_have_no_changes() -> None:
    doc = {"weights": {"relevance": 0.42, "risk": [1, 2, {"a": None}]}, "rules": ["x", "y"]}
    assert list(diff_json(doc, json.loads(json.dumps(doc)))) == []


def test_key_order_does_not_matter() -> None:
    assert list(diff_json({"a": 1, "b": 2}, {"b": 2, "a": 1})) == []


def test_changed_nested_keys_with_old_and_new_values() -> None:
    old = {"weights": {"relevance": 0.42, "recency": 0.3, "risk": 0.1}, "version": 3}
    new = {"weights": {"relevance": 0.57, "recency": 0.3, "risk": 0.15}, "version": 3}
    assert described(old, new) == ["weights.relevance: 0.42 -> 0.57", "weights.risk: 0.1 -> 0.15"]
    first = next(diff_json(old, new))
    assert first == JsonChange(("weights", "relevance"), CHANGED, 0.42, 0.57)


def test_added_and_removed_keys() -> None:
    changes = list(diff_json({"a": 1, "gone": {"x": 1}}, {"a": 1, "new": [1, 2]}))
    assert [(c.path, c.op) for c in changes] == [("gone", REMOVED), ("new", ADDED)]
    assert changes[0].old == {"x": 1}
    assert changes[1].new == [1, 2]
    assert changes[0].describe() == 'gone: removed {"x": 1}'
    assert changes[1].describe() == "new: added [1, 2]"


def test_list_insert_at_front_is_one_addition() -> None:
    old = {"rules": ["b", "c", "d"]}
    new = {"rules": ["a", "b", "c", "d"]}
    assert described(old, new) == ['rules[0]: added "a"']


def test_list_removal_and_addition_use_old_and_new_positions() -> None:
    old = {"rules": ["r0", "r1", "r2", "r3 never deploy on Fridays", "r4"]}
    new = {"rules": ["r0", "r1", "r2", "r4", "r5 ask before deleting"]}
    assert described(old, new) == [
        'rules[3]: removed "r3 never deploy on Fridays"',
        'rules[4]: added "r5 ask before deleting"',
    ]


def test_replaced_list_items_are_compared_key_by_key() -> None:
    old = {"agents": [{"name": "Z", "state": "IDLE", "restarts": 1}, {"name": "Jay", "state": "RUNNING"}]}
    new = {"agents": [{"name": "Z", "state": "RUNNING", "restarts": 1}, {"name": "Jay", "state": "RUNNING"}]}
    assert described(old, new) == ['agents[0].state: "IDLE" -> "RUNNING"']


def test_types_are_part_of_the_value() -> None:
    assert [c.op for c in diff_json({"a": 1}, {"a": 1.0})] == [CHANGED]
    assert [c.op for c in diff_json({"a": 1}, {"a": True})] == [CHANGED]
    assert [c.op for c in diff_json({"a": 0}, {"a": False})] == [CHANGED]
    assert list(diff_json({"a": None}, {"a": None})) == []
    assert described({"a": {"b": 1}}, {"a": [1]}) == ['a: {"b": 1} -> [1]']


def test_null_values_are_reported() -> None:
    changes = list(diff_json({"a": None}, {"a": 0}))
    assert changes == [JsonChange(("a",), CHANGED, None, 0)]
    assert changes[0].to_json() == {"path": "a", "keys": ["a"], "op": "changed", "old": None, "new": 0}


def test_root_scalar_change() -> None:
    assert described(1, 2) == ["(root): 1 -> 2"]
    assert described([1], {"a": 1}) == ['(root): [1] -> {"a": 1}']


def test_to_json_omits_the_missing_side() -> None:
    added = JsonChange(("rules", 4), ADDED, new="x")
    removed = JsonChange(("rules", 3), REMOVED, old="y")
    assert added.to_json() == {"path": "rules[4]", "keys": ["rules", 4], "op": "added", "new": "x"}
    assert removed.to_json() == {"path": "rules[3]", "keys": ["rules", 3], "op": "removed", "old": "y"}


@pytest.mark.parametrize(
    ("keys", "text"),
    [
        ((), "(root)"),
        (("weights", "relevance"), "weights.relevance"),
        (("rules", 3), "rules[3]"),
        ((0, "ts"), "[0].ts"),
        (("a.b", "c"), '["a.b"].c'),
        (("with space",), '["with space"]'),
        (("score-boost", "x_1"), "score-boost.x_1"),
        (("", "é"), '[""]["é"]'),
    ],
)
def test_format_keys(keys: tuple[str | int, ...], text: str) -> None:
    assert format_keys(keys) == text


def test_show_value_shortens_long_values() -> None:
    assert show_value("x" * 200, limit=20) == '"' + "x" * 16 + "..."
    assert show_value({"a": [1, 2]}) == '{"a": [1, 2]}'


def test_deep_documents_do_not_recurse() -> None:
    depth = 5000
    old: object = 1
    new: object = 2
    for _ in range(depth):
        old, new = {"k": old}, {"k": new}
    changes = list(diff_json(old, new))
    assert len(changes) == 1
    assert changes[0].keys == ("k",) * depth


def test_json_lines_are_a_list_of_documents() -> None:
    old = parse_json_lines('{"n": 1}\n{"n": 2}\n')
    new = parse_json_lines('{"n": 1}\n\n{"n": 3}\n{"n": 4}\n')
    assert old == [{"n": 1}, {"n": 2}]
    assert described(old, new) == ["[1].n: 2 -> 3", '[2]: added {"n": 4}']


def test_json_lines_error_names_the_line() -> None:
    with pytest.raises(ValueError, match="at line 2 column 7"):
        parse_json_lines('{"n": 1}\n{"n": \n')


def test_large_lists_align_without_autojunk() -> None:
    old = list(range(1000)) + [0] * 300
    new = [-1] + old
    assert described(old, new) == ["[0]: added -1"]

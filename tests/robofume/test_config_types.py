"""Config values from JSON are checked against their field's annotation: scalars only, one line."""

from __future__ import annotations

import dataclasses

from robofume.config_types import scalar_type_error


@dataclasses.dataclass
class Example:
    count: int = 1
    rate: float = 0.5
    name: str = "a"
    flag: bool = False
    limit: float | None = None
    items: tuple[str, ...] = ()


FIELDS = {f.name: f for f in dataclasses.fields(Example)}


def test_values_of_the_annotated_type_pass_and_a_float_field_takes_an_int() -> None:
    for name, value in [("count", 3), ("rate", 2), ("rate", 0.1), ("name", "b"), ("flag", True),
                        ("limit", None), ("limit", 4.0), ("items", ["anything"])]:  # fmt: skip
        assert scalar_type_error(FIELDS[name], value) is None, (name, value)


def test_wrong_types_are_one_line_messages_and_bools_are_not_numbers() -> None:
    assert scalar_type_error(FIELDS["count"], "3", "learner config: ") == (
        "learner config: count must be int, got '3'"
    )
    for name, value in [("count", 2.5), ("count", True), ("rate", "fast"), ("rate", False),
                        ("name", 3), ("flag", 1), ("limit", "none")]:  # fmt: skip
        message = scalar_type_error(FIELDS[name], value)
        assert message is not None and message.startswith(f"{name} must be") and "\n" not in message

"""The command line's value types: every list option is comma-separated and parsed here, once, so
that a bad item is a usage error naming the option, the same in every command."""
from typing import Callable, List, Tuple, TypeVar

import typer

from .errors import UserError
from .precision import PRECISIONS

Item = TypeVar("Item")


class Items(list):
    """A comma-separated option's items, converted (the annotation typer reads for such an option)."""


def comma_list(convert: Callable[[str], Item], what: str) -> Callable[[str], List[Item]]:
    """A typer `parser` for "a,b,c": each non-empty item through `convert` (a ValueError in it is
    the usage error "expects comma-separated WHAT"); at least one item."""

    def parse(value: str) -> List[Item]:
        try:
            items = Items(convert(item.strip()) for item in value.split(",") if item.strip())
        except ValueError as err:
            raise typer.BadParameter(f"expects comma-separated {what}, got {value!r} ({err})") from err
        if not items:
            raise typer.BadParameter(f"expects comma-separated {what}, got none")
        return items

    return parse


def positive_int(text: str) -> int:
    number = int(text)
    if number < 1:
        raise UserError(f"{number} is below 1")
    return number


def name_count(text: str) -> Tuple[str, int]:
    """`NAME=N`, N a whole number of at least 0."""
    name, equals, number = text.partition("=")
    if not equals or not name.strip():
        raise UserError(f"{text!r} is not NAME=N")
    count = int(number)
    if count < 0:
        raise UserError(f"{count} is below 0")
    return name.strip(), count


def precision_name(text: str) -> str:
    """`auto` or one of the precisions the component decodes in."""
    if text != "auto" and text not in PRECISIONS:
        raise UserError(f"{text!r} is not auto or one of {', '.join(PRECISIONS)}")
    return text


def fraction(text: str) -> float:
    number = float(text)
    if not 0.0 <= number <= 1.0:
        raise UserError(f"{number} is outside [0, 1]")
    return number


counts = comma_list(positive_int, "whole numbers of at least 1")
fractions = comma_list(fraction, "numbers in [0, 1]")
precisions = comma_list(precision_name, f"precisions (auto, {', '.join(PRECISIONS)})")
names = comma_list(str, "names")


def names_or_none(value: str) -> List[str]:
    """Like `names`, and "" for none (a project variable that is empty)."""
    return Items() if not value.strip() else names(value)


name_counts = comma_list(name_count, "NAME=N pairs (N a whole number of at least 0)")


def precision(value: str) -> str:
    """One precision: a typer `parser`."""
    try:
        return precision_name(value)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err

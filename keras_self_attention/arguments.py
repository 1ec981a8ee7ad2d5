"""Argument checks shared by the layers' constructors.

Each raises `ValueError` naming the argument and the value received.
"""

import numbers


class ChoiceError(ValueError, NotImplementedError):
    """An argument outside its choices.

    A `ValueError`, and also the `NotImplementedError` that
    keras-self-attention 0.51 raised for an unknown `attention_type`, so
    code that catches either keeps working.
    """


def check_choice(name, value, choices):
    if value not in choices:
        options = " or ".join(repr(choice) for choice in choices)
        raise ChoiceError(
            f"`{name}` must be {options}. Received: {name}={value!r}"
        )


def check_positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < 1
    ):
        kind = (
            "a positive integer or `None`"
            if allow_none
            else ("a positive integer")
        )
        raise ValueError(f"`{name}` must be {kind}. Received: {name}={value!r}")


def check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(
            f"`{name}` must be a boolean. Received: {name}={value!r}"
        )


def get_object(module, name, value):
    """`module.get(value)`, re-raised as a ValueError naming the argument."""
    try:
        return module.get(value)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"`{name}` must be a name, config dict or instance that "
            f"`keras.{module.__name__.split('.')[-1]}.get` understands. "
            f"Received: {name}={value!r}"
        ) from error

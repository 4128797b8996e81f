"""check_number and check_bool: what they take, what they turn away, and that the message names the argument,
what was expected and what came."""

import math

import numpy as np
import pytest

from convlstm.utils.checks import check_bool, check_number


@pytest.mark.parametrize("value", [0, 0.0, 3, 2.5, np.float32(0.5), np.int64(7)])
def test_check_number_takes_finite_numbers_from_the_minimum(value: object) -> None:
    checked = check_number("threshold", value, 0.0)
    assert isinstance(checked, float) and checked == float(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-1e-9, -3, math.inf, math.nan, True, "1", None])
def test_check_number_names_the_argument_the_bound_and_the_value(value: object) -> None:
    with pytest.raises(ValueError, match=r"^threshold must be a finite number >= 0, got ") as caught:
        check_number("threshold", value, 0.0)
    assert repr(value) in str(caught.value)


def test_check_number_without_a_minimum_takes_any_finite_number() -> None:
    assert check_number("value_scale", -2) == -2.0
    with pytest.raises(ValueError, match=r"^value_scale must be a finite number, got -inf$"):
        check_number("value_scale", -math.inf)


@pytest.mark.parametrize("value", [True, False])
def test_check_bool_takes_true_and_false(value: bool) -> None:
    assert check_bool("augment", value) is value


@pytest.mark.parametrize("value", [0, 1, "no", "True", None, np.bool_(True)])
def test_check_bool_turns_away_what_only_looks_like_one(value: object) -> None:
    with pytest.raises(ValueError, match=r"^augment must be True or False, got ") as caught:
        check_bool("augment", value)
    assert repr(value) in str(caught.value)

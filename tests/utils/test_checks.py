"""The shared argument checks: what they take, what they turn away, and that the message names the argument."""

import math

import numpy as np
import pytest

from convlstm.utils.checks import check_positive


@pytest.mark.parametrize("value", [1e-9, 3, 2.5, np.float32(0.5), np.int64(7)])
def test_check_positive_takes_finite_numbers_above_zero(value: object) -> None:
    checked = check_positive("lr", value)
    assert isinstance(checked, float) and checked == float(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, 0.0, -1e-9, -3, math.inf, math.nan, True, "1", None])
def test_check_positive_names_the_argument_and_the_value(value: object) -> None:
    with pytest.raises(ValueError, match=r"^lr must be a finite number > 0, got ") as caught:
        check_positive("lr", value)
    assert repr(value) in str(caught.value)

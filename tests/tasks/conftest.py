"""One torch thread per test: the tiny models here gain nothing from more, and on a loaded machine two spinning
OpenMP threads can make a step 100x slower."""

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

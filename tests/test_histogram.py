"""kernels/histogram.py: the word-at-a-time value histogram against NumPy's bincount."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastmask.kernels.histogram import value_histogram


@st.composite
def label_arrays(draw):
    dtype = draw(st.sampled_from([np.uint8, np.uint16]))
    top = np.iinfo(dtype).max
    # runs of values (the usual label map) mixed with noise, any length (tails of 0..7 pixels)
    runs = draw(st.lists(st.tuples(st.integers(0, top), st.integers(1, 40)), max_size=40))
    a = np.array([v for v, k in runs for _ in range(k)], dtype=dtype)
    offset = draw(st.integers(0, 7))  # unaligned views
    return a[min(offset, a.size):]


@given(label_arrays())
def test_value_histogram_equals_bincount(a):
    nbins = 256 if a.dtype == np.uint8 else 65536
    assert np.array_equal(value_histogram(a, nbins), np.bincount(a, minlength=nbins))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_value_histogram_runs_across_words(dtype):
    # a run that starts mid-word and spans many words, then a different value in the last lane
    a = np.zeros(1001, dtype)
    a[5:900] = 7
    a[-1] = 3
    h = value_histogram(a, 256 if dtype == np.uint8 else 65536)
    assert (h[0], h[7], h[3], h.sum()) == (105, 895, 1, 1001)

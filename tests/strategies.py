"""Hypothesis strategies for the shapes and options the library takes."""

from __future__ import annotations

from hypothesis import strategies as st

#: Batch sizes worth trying: small, to keep examples fast.
batch_sizes = st.integers(min_value=1, max_value=16)


@st.composite
def accepted_shapes(draw: st.DrawFn) -> tuple[int, ...]:
    """A shape FashionMLP accepts: (N, 1, 28, 28), (N, 28, 28) or (N, 784)."""
    n = draw(batch_sizes)
    return draw(st.sampled_from([(n, 1, 28, 28), (n, 28, 28), (n, 784)]))


@st.composite
def rejected_shapes(draw: st.DrawFn) -> tuple[int, ...]:
    """A shape FashionMLP must refuse."""
    accepted_tails = {(1, 28, 28), (28, 28), (784,)}
    shape = tuple(draw(st.lists(st.integers(min_value=1, max_value=40), min_size=0, max_size=5)))
    if shape[1:] in accepted_tails:
        shape = shape + (2,)  # one more axis makes any accepted shape wrong
    return shape


#: Keyword options of FashionMLP: (hidden_features, hidden_layers, dropout).
model_options = st.tuples(
    st.integers(min_value=1, max_value=64),
    st.integers(min_value=1, max_value=4),
    st.sampled_from([0.0, 0.1, 0.5]),
)


@st.composite
def loader_sizes(draw: st.DrawFn) -> tuple[int, int]:
    """(dataset size, batch size) pairs, including batch sizes larger than the data."""
    return draw(st.integers(min_value=1, max_value=200)), draw(
        st.integers(min_value=1, max_value=64)
    )

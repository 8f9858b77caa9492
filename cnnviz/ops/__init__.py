"""The operations behind the teaching pages: convolution, resampling, pooling, BatchNorm.

Each module holds typed functions that take tensors and plain numbers and return small
dataclasses (tensors + the numbers a page shows). Nothing here imports streamlit.

    from cnnviz.ops import conv, kernels, resample, pool, batchnorm

`previews` turns their results into pictures for the pages (same-scale previews, zoomed crops).
"""

class OpError(ValueError):
    """A parameter combination the operation can't run with; the message is user-facing."""

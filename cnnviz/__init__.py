"""cnnviz: the backend of a visual playground for convolutional networks.

Everything the Streamlit pages show is computed here and can be used from Python or a
notebook. This package never imports streamlit, and importing it does not import torch
(submodules that need torch import it themselves).
"""

__version__ = "0.1.0"

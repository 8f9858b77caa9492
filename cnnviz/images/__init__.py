"""Images: safe decoding of anything a user drops in, and turning tensors back into pictures.

Modules:
- `decode`: `load_image` (formats, EXIF rotation, modes, 16-bit, decompression bombs, each
  refused with a plain `ImageLoadError`), `prepare` (longest side, centre crop), the shipped
  samples. Imports only Pillow and numpy, so the app's sidebar uses it before torch loads.
- `drawing`: `prepare_digit`, a drawing made into a 28x28 digit the way MNIST was made (ink white on
  black, box scaled into 20x20, centre of mass centred); numpy and Pillow only.
- `display`: tensors to PIL pictures: images, signed heat maps, channel grids (needs torch;
  import it as `from cnnviz.images import display`).
"""

from .decode import (ASSETS, FORMATS, MAX_BYTES, MAX_PIXELS, SUPPORTED, ImageLoadError, Sample, default_image,
                     load_image, prepare, samples)
from .drawing import DigitPrep, prepare_digit

__all__ = ["ASSETS", "FORMATS", "MAX_BYTES", "MAX_PIXELS", "SUPPORTED", "DigitPrep", "ImageLoadError", "Sample",
           "default_image", "load_image", "prepare", "prepare_digit", "samples"]

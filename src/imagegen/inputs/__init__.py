"""Input images (edits, image-to-image, inpainting): read from an upload, a ``data:`` URL or an
``https`` URL, verified with Pillow, checked against each other, then stored like outputs.

``reader.py`` turns one source into verified bytes; ``images.py`` checks a request's images and
mask together and stores them, content-addressed, only once all of them are good.
"""

from imagegen.inputs.images import InputImages
from imagegen.inputs.reader import InputBlob, InputReader, InputSource

__all__ = ["InputBlob", "InputImages", "InputReader", "InputSource"]

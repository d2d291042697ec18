"""HU windowing: the network's intensity scaling for CT, with the window stated in HU."""

from __future__ import annotations

import torchio as tio
from torchio.transforms.intensity_transform import IntensityTransform

from synth.hu_window import check_window, window_to_range


class HUWindow(IntensityTransform):
    """Clip CT values to a Hounsfield-unit window and map the window linearly onto ``out_range``.

    Deterministic, so it has no random twin; it is recorded in the history like any transform.
    Apply it last: every earlier step (tumour insertion, noise, contrast) works in HU.

    Args:
        window_hu: ``(low, high)`` in HU. The default, -160 to 240 HU (width 400, level 40), is
            the usual abdominal soft-tissue window: it keeps liver, lesions (about -50 to 200 HU)
            and contrast-filled vessels apart and flattens air, fat and bone.
        out_range: Values that ``low`` and ``high`` map to.
        **kwargs: See :class:`~torchio.transforms.Transform` (``include``, ``exclude``, ...).
            Label maps are never changed.

    Example:
        >>> from augment import HUWindow
        >>> scaled = HUWindow(window_hu=(-160, 240))(subject)  # CT now in [0, 1]  # doctest: +SKIP
    """

    def __init__(self, window_hu=(-160.0, 240.0), out_range=(0.0, 1.0), **kwargs):
        super().__init__(**kwargs)
        self.window_hu = check_window(window_hu, "window_hu")
        self.out_range = check_window(out_range, "out_range")
        self.args_names = ["window_hu", "out_range"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        for image in self.get_images(subject):
            image.set_data(window_to_range(image.data, self.window_hu, self.out_range))
        return subject

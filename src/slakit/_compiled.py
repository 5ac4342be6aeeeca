"""The switch for slakit's optional compiled modules (``_ccal``, ``_crecords``)."""

from __future__ import annotations

import os
from typing import Final

#: ``SLAKIT_PURE`` set to anything but empty or ``0`` at import turns every
#: compiled module off: slakit then runs its pure-Python code throughout.
PURE_BY_ENV: Final[bool] = os.environ.get("SLAKIT_PURE", "").strip() not in ("", "0")

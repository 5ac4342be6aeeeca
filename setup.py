"""Build the optional C accelerators (calendar, records); all metadata is in pyproject.toml.

``optional=True``: when the extension cannot be compiled (no C compiler, no
Python headers) setuptools prints a warning, skips it, and the install goes on;
slakit then runs in pure Python (``slakit.calendar.ACCELERATED`` is False).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "slakit._ccal",
            sources=["src/slakit/_ccal.c"],
            optional=True,
        ),
        Extension(
            "slakit._crecords",
            sources=["src/slakit/_crecords.c"],
            optional=True,
        ),
    ]
)

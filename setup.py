"""Build hook for the optional C extension ``radius._speedups`` (issue 16).

Everything else about the package is in pyproject.toml. The extension is ``optional``:
when there is no C compiler or no Python headers, setuptools warns and installs the
package without it, and ``radius.fastpath`` runs the pure-Python data path (and says so).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "radius._speedups",
            sources=["radius/_speedups.c"],
            extra_compile_args=[
                "-O2",
                "-std=c11",
                "-D_GNU_SOURCE",
                "-Wall",
                "-Wextra",
                "-Wno-unused-parameter",
                "-Wno-missing-field-initializers",
            ],
            optional=True,
        )
    ]
)

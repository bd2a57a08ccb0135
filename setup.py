"""Build hook for the optional C extensions ``radius._speedups`` and
``controller.storage._archive_fmt`` (issue 16).

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
        ),
        # the archiver's routing and login rows (issue 16 item 3); optional as well:
        # controller.storage.archive_text is the reference and the fallback
        Extension(
            "controller.storage._archive_fmt",
            sources=["controller/storage/_archive_fmt.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
    ]
)

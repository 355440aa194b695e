"""Keeps TensorFlow out of a test run that selected no test marked ``tensorflow``.

conftest.py installs ``RefuseTensorFlow`` in the test process and puts this folder on
PYTHONPATH, so that every Python subprocess a test starts (the ``composer`` entry point, a
worker, ``python -c``) loads it at start-up as its ``sitecustomize`` and refuses too. Each
refused import is also appended to the file named by ``COMPOSER_TEST_REFUSED_LOG``: an import
that the code under test catches (``except Exception``) or that happens in a subprocess still
fails the test that caused it.
"""

from __future__ import annotations

import os
import sys

REFUSED = ("tensorflow", "keras")
LOG = "COMPOSER_TEST_REFUSED_LOG"


class RefuseTensorFlow:
    """A meta-path finder that refuses the modules in REFUSED."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in REFUSED:
            return None
        log = os.environ.get(LOG)
        if log:
            with open(log, "a") as out:
                out.write(f"{os.getpid()} {name}\n")
        raise ImportError(f"{name} is refused: this test run selected no test marked tensorflow (mark the test that needs it)")


if __name__ == "sitecustomize":  # loaded at start-up by a subprocess, not imported by conftest.py
    sys.meta_path.insert(0, RefuseTensorFlow())

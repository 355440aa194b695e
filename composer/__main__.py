"""`python -m composer`: the `composer` command, where the virtualenv's bin/ is not on PATH."""

from composer.cli import main

main()

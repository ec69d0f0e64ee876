"""``python -m comfy_cassettes``: the same command line as the ``comfy-cassettes`` script."""

from .cli import main

main()

"""Thin launcher: ``python cli.py ...`` runs the comfy-cassettes command line without installing it."""

from comfy_cassettes.cli import main

if __name__ == "__main__":
    main()

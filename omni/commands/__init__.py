"""Subcommands of the `omni` command line (see omni/cli.py)."""

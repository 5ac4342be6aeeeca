"""The ``slakit`` command line."""

from __future__ import annotations

import click

import slakit


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(slakit.__version__, prog_name="slakit")
def cli() -> None:
    """slakit: SLA timers with consequences, traced and measured."""


def main() -> None:
    """Console-script entry point."""
    cli()

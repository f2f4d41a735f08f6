"""``python -m oral6_core`` runs the CLI (e.g. under ``torchrun -m oral6_core train``)."""

from .cli import main

main()

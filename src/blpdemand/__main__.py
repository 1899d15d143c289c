"""``python -m blpdemand`` runs the command line."""

from blpdemand.cli import main

raise SystemExit(main())

"""``python -m multiticket.cli``: the command line, as ``python -m multiticket.cli`` ran it before the
CLI became a package (``python -m multiticket`` installs the signal handlers first)."""

from multiticket.cli import main

raise SystemExit(main())

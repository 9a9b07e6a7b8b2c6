"""`python -m localdsp`: see localdsp.cli."""

from localdsp.cli import main

raise SystemExit(main())

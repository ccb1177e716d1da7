"""`python -m deeptui`: the command line (deeptui.tui.cli). The build maps this folder to the
package `deeptui` (see pyproject.toml), so this file is deeptui/__main__.py once installed; it is
what --detach and --nproc start in their child processes."""

import sys

from deeptui.tui.cli import main

sys.exit(main())

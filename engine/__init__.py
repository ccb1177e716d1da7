"""deeptui.engine: everything that trains. Knows nothing of terminals: it never imports a front end,
textual, rich or plotext (a contract in pyproject.toml, checked by make test)."""

"""deeptui.integrations: deeptui under other tools' training loops (each an optional extra)."""

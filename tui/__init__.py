"""deeptui.tui: the front ends (dashboards, headless printer, attach/ls/bench) and the command line."""

"""Commands and events as JSON lines over a Unix domain socket in the run directory.

    client -> server   {"type": "SwitchOptimizer", "name": "adam", "id": 12}
                       {"type": "Status"}                 (answered with one Status line)
    server -> client   {"type": "CommandApplied", "time_s": ..., "command_id": 12, ...}
                       {"type": "Error", "message": "...", "id": 12}   (bad input; the run goes on)
                       {"type": "Status", "state": "running", "step": 120, ...}

On connect a client first gets every event of the run so far, then {"type": "HistoryEnd"}, then
the live stream; after Finished the server closes the connection. Commands are answered by the
engine's own CommandApplied / CommandRejected events (with the command's id), which every client
sees. The socket is only reachable through the file system: mode 0600, nothing on a network port.

wire.py: addresses and the JSON form; server.py: ControlServer, one per run; client.py:
RemoteSession, a run in another process with the Session surface.
"""

"""The per-user controller and its store.

``client`` (the socket, for every command) and ``store`` (reading jobs and
steps straight from SQLite) are what the commands use. The controller
process is ``controller`` (the loop), ``lifecycle`` (a job's life),
``server`` (the socket), ``ops`` (its requests), ``submit``, ``scheduler``
(+ ``deps``, ``lookup``), ``launch`` (the executor seam), ``recovery`` and
``jobs``; ``paths`` says where things live.
"""

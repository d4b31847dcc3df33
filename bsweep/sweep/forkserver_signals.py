"""Imported last by the fork server that the workers fork from (its preload,
`workers.start_server`), for this one effect: from then on the server ignores SIGTERM.

A SLURM preemption or `kill -TERM` of the process group reaches the server too, and a server that
dies closes the pipes by which the launching process watches its workers, which then counts them
dead ("terminated abruptly") while they are saving their checkpoints. The launching process stops
the server with SIGKILL (`workers.stop_server`). Workers set SIGTERM back to its default as they
start (`workers._warm`).
"""

import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)

"""The standalone daemon: tasks, their processes, the control socket and command channel."""

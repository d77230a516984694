"""The controller's wire protocol, client side: see ``sflow.queue.client`` (this name is kept for its importers)."""

from sflow.queue.client import ControllerUnavailable, call, connect, socket_path, start_controller, wait

__all__ = ["ControllerUnavailable", "call", "connect", "socket_path", "start_controller", "wait"]

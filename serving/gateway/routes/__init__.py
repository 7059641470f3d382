"""The gateway's routes, one router per concern; ``create_app`` includes them in this order
(the order ``/docs`` lists them)."""

from __future__ import annotations

from serving.gateway.routes import model, ops, page, segment

ROUTERS = (page.router, ops.router, model.router, segment.router)

__all__ = ["ROUTERS"]

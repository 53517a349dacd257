"""The merchant console: an optional, server-rendered view of the store
(``ACP_CONSOLE_ENABLED``, mounted at ``ACP_CONSOLE_PREFIX``).

- :mod:`.access` -- who may see it: the host app's own check
  (``ACP_CONSOLE_AUTH``), a console password (``ACP_CONSOLE_PASSWORD_HASH``,
  a signed login cookie) and an address allow-list (``ACP_CONSOLE_ALLOWED_IPS``);
  every one that is set applies, and with none the app does not start. Every
  ``POST`` carries a Flask-WTF CSRF token.
- :mod:`.views` -- the pages (Jinja templates in ``templates/acp_console/``,
  no script, no build step): the conversion funnel per agent and day, orders
  with their payment and platform state, the order-event outbox per agent
  with ages, failed deliveries with a replay button, completions stuck in
  ``complete_in_progress``, declines and rate-limited agents.

The pages read the store through :mod:`flask_acp.queries` (shared with the
CLI views); the replay button calls :meth:`WebhookService.replay
<flask_acp.webhooks.service.WebhookService.replay>`, as ``flask acp events
replay`` does. Nothing below the edges imports this package.
"""

from __future__ import annotations

from .views import make_blueprint

__all__ = ["make_blueprint"]

"""The product feed: the merchant's catalog pushed to agents' Feed APIs
(ACP 2026-04-17, ``openapi.feed.yaml``, ``schema.feed.json``; spec digest §3.1, §18.10).

- :mod:`.export`: the catalog as JSON Lines, one ``Product`` per line
  (``flask acp feed export``);
- :mod:`.client`: the HTTP client of one agent's Feed API (``POST /feeds``,
  ``GET /feeds/{id}``, ``PATCH /feeds/{id}/products``);
- :mod:`.push`: full or incremental pushes, resumable, with their state file
  (``flask acp feed push``);
- :mod:`.sync`: incremental updates from platform webhooks, as outbox events
  of kind ``feed_products`` delivered by the order-webhook machinery;
- :mod:`.cli`: the ``flask acp feed`` commands.

Adapters list their catalog through :meth:`flask_acp.adapter.PlatformAdapter.iter_products`
(version-free :mod:`flask_acp.products` records); the JSON is
:mod:`flask_acp.versions.v2026_04_17.feed`'s.
"""

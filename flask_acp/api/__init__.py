"""The transport-neutral checkout API: the request pipeline
(:mod:`.pipeline`), idempotency (:mod:`.idempotency`), request bodies
(:mod:`.body`) and the one table from error causes to responses
(:mod:`.errors`). Bindings (the Flask blueprint, MCP) drive it; it imports no
web framework."""

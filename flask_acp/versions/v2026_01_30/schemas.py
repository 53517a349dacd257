"""ACP 2026-01-30 request schemas: 2026-04-17's without ``order_notes`` and
``marketing_consents``, which 2026-01-30 does not define (sent, they are
ignored, like any unknown field)."""

from __future__ import annotations

from marshmallow import Schema

from ..v2026_04_17 import schemas as newer


class CreateRequestSchema(newer.CreateRequestSchema):
    class Meta(newer.CreateRequestSchema.Meta):
        exclude = ("order_notes",)


class UpdateRequestSchema(newer.UpdateRequestSchema):
    class Meta(newer.UpdateRequestSchema.Meta):
        exclude = ("order_notes",)


class CompleteRequestSchema(newer.CompleteRequestSchema):
    class Meta(newer.CompleteRequestSchema.Meta):
        exclude = ("order_notes", "marketing_consents")


REQUEST_SCHEMAS: dict[str, type[Schema]] = {
    "create": CreateRequestSchema,
    "update": UpdateRequestSchema,
    "complete": CompleteRequestSchema,
    "cancel": newer.CancelRequestSchema,
}

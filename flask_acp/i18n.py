"""Buyer-facing texts (totals labels, message contents) in the agent's language.

The language comes from ``Accept-Language`` (spec §4: "Localize display_text,
message content"), negotiated with werkzeug's ``best_match`` over
:data:`LANGUAGES`; English is the fallback. A missing translation falls back to
English for that text. Platform-provided texts (``Message.content``) are passed
through unchanged.
"""

from __future__ import annotations

import typing as t

#: languages with a full set of texts, English first (the fallback).
LANGUAGES: tuple[str, ...] = ("en", "fr", "de", "es")

_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "total.items_base_amount": "Item(s) total",
        "total.items_discount": "Item discounts",
        "total.subtotal": "Subtotal",
        "total.discount": "Discount",
        "total.fulfillment": "Fulfillment",
        "total.tax": "Tax",
        "total.fee": "Fees",
        "total.total": "Total",
        "line.items_base_amount": "Base amount",
        "line.discount": "Discount",
        "line.subtotal": "Subtotal",
        "line.tax": "Tax",
        "line.total": "Total",
        "option.total": "Shipping",
        "option.digital": "Delivery",
        "item_not_found": "The item '{item_id}' does not exist.",
        "out_of_stock": "'{name}' is currently out of stock.",
        "low_stock": "Only {available} of '{name}' left in stock.",
        "quantity_exceeded": "Only {available} of '{name}' can be ordered.",
        "currency_unsupported": "This store does not sell in '{currency}'.",
        "no_shipping_to_address": "This store does not ship to {country}.",
        "address_required": "A shipping address is needed to offer delivery options.",
        "fulfillment_split": "Your items are delivered in several ways: {options}.",
        "email_required": "An e-mail address is needed to deliver the digital items.",
        "fulfillment_option_invalid": "The fulfillment option '{option_id}' is not available.",
        "payment_declined": "Your payment was declined. Please try a different payment method.",
        "payments_paused": "Too many payment attempts failed for this checkout; "
                           "payment can be tried again in {seconds} seconds.",
        "payment_token_invalid": "The payment credential cannot be used: {reason}",
        "payment_token_used": "This payment credential was already used for another checkout; "
                              "a delegated payment token pays for one checkout only. Get a new one.",
        "payment_requires_3ds": (
            "The card requires authentication, which this checkout cannot perform. "
            "Please try a different payment method."
        ),
        "price_changed": "The total changed from {old} to {new} minor units; please review before paying.",
        "not_ready": "The checkout session is not ready for payment yet.",
        "order_failed": "The order could not be placed: {reason}",
        "stock_hold_short": (
            "The store could not hold the items long enough to take the payment; "
            "please try to complete the checkout again."
        ),
        "amount_not_multiple": (
            "The total of {total} cannot be charged: {currency} payments must be a multiple of {step}."
        ),
        "amount_below_minimum": "The total of {total} is below the minimum payment of {limit}.",
        "amount_above_maximum": "The total of {total} is above the maximum payment of {limit}.",
        "amount_not_chargeable": "The payment processor cannot charge a total of {total}.",
        "discount_code_expired": "The discount code '{code}' has expired.",
        "discount_code_invalid": "The discount code '{code}' is not valid.",
        "discount_code_already_applied": "The discount code '{code}' is already applied.",
        "discount_code_combination_disallowed": (
            "The discount code '{code}' cannot be combined with the other discounts of this checkout."
        ),
        "discount_code_minimum_not_met": (
            "The order does not reach the minimum for the discount code '{code}'."
        ),
        "discount_code_user_not_logged_in": "The discount code '{code}' needs a signed-in customer.",
        "discount_code_user_ineligible": "This customer cannot use the discount code '{code}'.",
        "discount_code_usage_limit_reached": "The discount code '{code}' has reached its usage limit.",
        "discount_code_repeated": "The discount code '{code}' was sent more than once; it applies once.",
        "discount_code_not_applied": "The store did not apply the discount code '{code}'.",
        "discount_codes_paused": (
            "Too many discount codes were rejected for this checkout; the code '{code}' was not tried. "
            "New codes can be tried again in {seconds} seconds."
        ),
        "discount_codes_paused_agent": (
            "Too many discount codes were rejected for this agent's checkouts; the code '{code}' was not "
            "tried. New codes can be tried again in {seconds} seconds."
        ),
        "discount_codes_not_tried": (
            "Too many new discount codes at once for this checkout; the code '{code}' was not tried. "
            "Send it again in a later update."
        ),
        "discount_extension_inactive": (
            "Discount codes are applied only when the agent lists the 'discount' extension in "
            "capabilities.extensions when creating the checkout; the codes sent were not applied."
        ),
    },
    "fr": {
        "total.items_base_amount": "Total des articles",
        "total.items_discount": "Remises sur articles",
        "total.subtotal": "Sous-total",
        "total.discount": "Remise",
        "total.fulfillment": "Livraison",
        "total.tax": "Taxes",
        "total.fee": "Frais",
        "total.total": "Total",
        "line.items_base_amount": "Montant de base",
        "line.discount": "Remise",
        "line.subtotal": "Sous-total",
        "line.tax": "Taxes",
        "line.total": "Total",
        "option.total": "Livraison",
        "option.digital": "Envoi",
        "item_not_found": "L'article « {item_id} » n'existe pas.",
        "out_of_stock": "« {name} » est en rupture de stock.",
        "low_stock": "Plus que {available} « {name} » en stock.",
        "quantity_exceeded": "Vous pouvez commander au plus {available} « {name} ».",
        "currency_unsupported": "Cette boutique ne vend pas en « {currency} ».",
        "no_shipping_to_address": "Cette boutique ne livre pas vers {country}.",
        "address_required": "Une adresse de livraison est nécessaire pour proposer des options de livraison.",
        "fulfillment_split": "Vos articles sont livrés de plusieurs façons : {options}.",
        "fulfillment_option_invalid": "L'option de livraison « {option_id} » n'est pas disponible.",
        "payment_declined": "Votre paiement a été refusé. Essayez un autre moyen de paiement.",
        "payments_paused": "Trop de tentatives de paiement ont échoué pour cette commande ; "
                           "vous pourrez réessayer dans {seconds} secondes.",
        "payment_token_used": "Ce moyen de paiement a déjà servi pour une autre commande ; "
                              "un jeton de paiement délégué ne vaut que pour une commande. "
                              "Obtenez-en un nouveau.",
        "not_ready": "La session de paiement n'est pas encore prête.",
        "amount_not_multiple": (
            "Le total de {total} ne peut pas être débité : les paiements en {currency} doivent être "
            "un multiple de {step}."
        ),
        "amount_below_minimum": "Le total de {total} est inférieur au paiement minimum de {limit}.",
        "amount_above_maximum": "Le total de {total} dépasse le paiement maximum de {limit}.",
        "amount_not_chargeable": "Le prestataire de paiement ne peut pas débiter un total de {total}.",
    },
    "de": {
        "total.items_base_amount": "Artikelsumme",
        "total.items_discount": "Artikelrabatte",
        "total.subtotal": "Zwischensumme",
        "total.discount": "Rabatt",
        "total.fulfillment": "Versand",
        "total.tax": "Steuern",
        "total.fee": "Gebühren",
        "total.total": "Gesamt",
        "line.items_base_amount": "Grundbetrag",
        "line.discount": "Rabatt",
        "line.subtotal": "Zwischensumme",
        "line.tax": "Steuern",
        "line.total": "Gesamt",
        "option.total": "Versand",
        "option.digital": "Zustellung",
        "item_not_found": "Den Artikel „{item_id}“ gibt es nicht.",
        "out_of_stock": "„{name}“ ist derzeit nicht vorrätig.",
        "quantity_exceeded": "Von „{name}“ können höchstens {available} bestellt werden.",
        "address_required": "Für Versandoptionen wird eine Lieferadresse benötigt.",
        "fulfillment_split": "Ihre Artikel werden auf mehreren Wegen geliefert: {options}.",
        "payment_declined": "Ihre Zahlung wurde abgelehnt. Bitte versuchen Sie eine andere Zahlungsart.",
        "payments_paused": "Zu viele Zahlungsversuche für diesen Checkout sind fehlgeschlagen; "
                           "eine Zahlung ist in {seconds} Sekunden wieder möglich.",
        "payment_token_used": "Dieses Zahlungsmittel wurde bereits für einen anderen Checkout verwendet; "
                              "ein delegiertes Zahlungstoken gilt nur für einen Checkout. "
                              "Fordern Sie ein neues an.",
        "amount_below_minimum": "Der Gesamtbetrag von {total} liegt unter der Mindestzahlung von {limit}.",
        "amount_above_maximum": "Der Gesamtbetrag von {total} liegt über der Höchstzahlung von {limit}.",
    },
    "es": {
        "total.items_base_amount": "Total de artículos",
        "total.items_discount": "Descuentos de artículos",
        "total.subtotal": "Subtotal",
        "total.discount": "Descuento",
        "total.fulfillment": "Envío",
        "total.tax": "Impuestos",
        "total.fee": "Cargos",
        "total.total": "Total",
        "line.items_base_amount": "Importe base",
        "line.discount": "Descuento",
        "line.subtotal": "Subtotal",
        "line.tax": "Impuestos",
        "line.total": "Total",
        "option.total": "Envío",
        "option.digital": "Entrega",
        "item_not_found": "El artículo «{item_id}» no existe.",
        "out_of_stock": "«{name}» está agotado.",
        "quantity_exceeded": "Solo se pueden pedir {available} de «{name}».",
        "address_required": "Se necesita una dirección de envío para ofrecer opciones de entrega.",
        "fulfillment_split": "Sus artículos se entregan de varias formas: {options}.",
        "payment_declined": "Su pago fue rechazado. Pruebe con otro método de pago.",
        "payments_paused": "Demasiados intentos de pago fallaron para esta compra; "
                           "podrá intentarlo de nuevo en {seconds} segundos.",
        "payment_token_used": "Esta credencial de pago ya se usó en otra compra; "
                              "un token de pago delegado sirve para una sola compra. Obtenga uno nuevo.",
        "amount_below_minimum": "El total de {total} es inferior al pago mínimo de {limit}.",
        "amount_above_maximum": "El total de {total} supera el pago máximo de {limit}.",
    },
}


def text(language: str, key: str, args: t.Mapping[str, str] | None = None) -> str:
    """The text ``key`` in ``language`` (falling back to English), formatted
    with ``args``. An unknown key renders as the key itself."""
    template = _TEXTS.get(language, {}).get(key) or _TEXTS["en"].get(key, key)
    try:
        return template.format(**(args or {}))
    except (KeyError, IndexError):
        return _TEXTS["en"].get(key, key).format_map(_Missing(args or {}))


class _Missing(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"

"""The Admin GraphQL documents the Shopify adapter sends, one constant each.

Every document is complete (it defines the fragments it spreads and no
others), names its operation (the fake's per-operation call counters and
Shopify's logs use the name) and is checked by the test suite against the
full Admin schema (``tests/test_shopify_schema.py``). Field names are
Shopify's; see https://shopify.dev/docs/api/admin-graphql (version pinned by
``SHOPIFY_API_VERSION``).
"""

from __future__ import annotations

__all__ = [
    "ABANDONED_DRAFTS",
    "ALL_DOCUMENTS",
    "DELIVERY_OPTIONS",
    "DRAFT_ORDER",
    "DRAFT_ORDER_COMPLETE",
    "DRAFT_ORDER_CREATE",
    "DRAFT_ORDER_DELETE",
    "DRAFT_ORDER_STATUS",
    "DRAFT_ORDER_UPDATE",
    "ORDERS_CHANGED",
    "ORDER_SYNC_LIMITS",
    "PRODUCTS",
    "PRODUCTS_BY_ID",
    "PRODUCT_PAGE_LIMITS",
    "SHOP_CURRENCIES",
    "TAGS_ADD",
    "VARIANTS",
]

_MONEY = """
fragment AcpMoney on MoneyBag {
  shopMoney { amount currencyCode }
  presentmentMoney { amount currencyCode }
}
"""

_ORDER = """
fragment AcpOrder on Order {
  id name legacyResourceId statusPageUrl displayFinancialStatus tags
  totalPriceSet { ...AcpMoney }
}
"""

# Everything a quote needs from a draft: totals, per-line taxes, the shipping
# line, readiness, the stock of each line's variant (checked again before
# charging), each line's unit price and ``priceOverride`` (the prices are
# fixed before charging), and the discounts Shopify applied (``platformDiscounts``
# with their line allocations) or did not (``DraftOrderDiscountNotAppliedWarning``). https://shopify.dev/docs/api/admin-graphql/latest/objects/DraftOrder
_DRAFT = """
fragment AcpDraft on DraftOrder {
  id name status ready reserveInventoryUntil updatedAt
  customAttributes { key value }
  currencyCode presentmentCurrencyCode taxesIncluded
  lineItems(first: 100) {
    nodes {
      id quantity requiresShipping
      variant {
        id availableForSale inventoryPolicy sellableOnlineQuantity
        inventoryItem { tracked }
      }
      originalUnitPriceSet { ...AcpMoney }
      priceOverride { amount currencyCode }
      originalTotalSet { ...AcpMoney }
      discountedTotalSet { ...AcpMoney }
      taxLines { title priceSet { ...AcpMoney } }
    }
  }
  shippingLine {
    title code source shippingRateHandle
    taxLines { title priceSet { ...AcpMoney } }
  }
  subtotalPriceSet { ...AcpMoney }
  totalDiscountsSet { ...AcpMoney }
  totalShippingPriceSet { ...AcpMoney }
  totalTaxSet { ...AcpMoney }
  totalPriceSet { ...AcpMoney }
  discountCodes
  platformDiscounts {
    id code title automaticDiscount presentationLevel
    totalAmountPriceSet { ...AcpMoney }
    allocations {
      reductionAmountSet { ...AcpMoney }
      target {
        __typename
        ... on DraftOrderLineItem { id variant { id } }
      }
    }
  }
  warnings { errorCode field message ... on DraftOrderDiscountNotAppliedWarning { discountCode } }
  order { ...AcpOrder }
}
"""

#: Validate the requested variants and read the shop's currencies in one call
#: (``nodes`` returns ``null`` for unknown ids).
#: https://shopify.dev/docs/api/admin-graphql/latest/queries/nodes
VARIANTS = """
query AcpVariants($ids: [ID!]!) {
  shop { currencyCode enabledPresentmentCurrencies taxesIncluded }
  nodes(ids: $ids) {
    __typename
    ... on ProductVariant {
      id title displayName sku taxable availableForSale inventoryPolicy sellableOnlineQuantity
      image { url }
      inventoryItem { tracked requiresShipping }
      product { id title status publishedAt }
    }
  }
}
"""

#: The shop currency and the presentment currencies it sells in (discovery).
#: https://shopify.dev/docs/api/admin-graphql/latest/objects/Shop
SHOP_CURRENCIES = """
query AcpShopCurrencies {
  shop { currencyCode enabledPresentmentCurrencies }
}
"""

#: Shipping and local-delivery rates for line items and an address (2025-07+).
#: https://shopify.dev/docs/api/admin-graphql/latest/queries/draftOrderAvailableDeliveryOptions
DELIVERY_OPTIONS = """
query AcpDeliveryOptions($input: DraftOrderAvailableDeliveryOptionsInput!) {
  draftOrderAvailableDeliveryOptions(input: $input) {
    availableShippingRates { handle title code source price { amount currencyCode } }
    availableLocalDeliveryRates { handle title code source price { amount currencyCode } }
  }
}
"""

#: https://shopify.dev/docs/api/admin-graphql/latest/mutations/draftOrderCreate
DRAFT_ORDER_CREATE = """
mutation AcpDraftOrderCreate($input: DraftOrderInput!) {
  draftOrderCreate(input: $input) {
    draftOrder { ...AcpDraft }
    userErrors { field message }
  }
}
""" + _DRAFT + _ORDER + _MONEY

#: https://shopify.dev/docs/api/admin-graphql/latest/mutations/draftOrderUpdate
DRAFT_ORDER_UPDATE = """
mutation AcpDraftOrderUpdate($id: ID!, $input: DraftOrderInput!) {
  draftOrderUpdate(id: $id, input: $input) {
    draftOrder { ...AcpDraft }
    userErrors { field message }
  }
}
""" + _DRAFT + _ORDER + _MONEY

#: Re-read a draft (readiness polling, re-pricing before the charge).
#: https://shopify.dev/docs/api/admin-graphql/latest/queries/draftOrder
DRAFT_ORDER = """
query AcpDraftOrder($id: ID!) {
  draftOrder(id: $id) { ...AcpDraft }
}
""" + _DRAFT + _ORDER + _MONEY

#: The minimal re-read before completing: has an earlier attempt completed it,
#: and is its (calculated) total still the amount charged?
DRAFT_ORDER_STATUS = """
query AcpDraftOrderStatus($id: ID!) {
  draftOrder(id: $id) {
    id status ready
    totalPriceSet { ...AcpMoney }
    order { ...AcpOrder }
  }
}
""" + _ORDER + _MONEY

#: Complete the draft as paid (no ``paymentGatewayId``: recorded as a manual payment).
#: https://shopify.dev/docs/api/admin-graphql/latest/mutations/draftOrderComplete
DRAFT_ORDER_COMPLETE = """
mutation AcpDraftOrderComplete($id: ID!) {
  draftOrderComplete(id: $id) {
    draftOrder { id status order { ...AcpOrder } }
    userErrors { field message }
  }
}
""" + _ORDER + _MONEY

#: https://shopify.dev/docs/api/admin-graphql/latest/mutations/tagsAdd
TAGS_ADD = """
mutation AcpTagsAdd($id: ID!, $tags: [String!]!) {
  tagsAdd(id: $id, tags: $tags) {
    node { id }
    userErrors { field message }
  }
}
"""

#: Releases the draft's inventory reservation.
#: https://shopify.dev/docs/api/admin-graphql/latest/mutations/draftOrderDelete
DRAFT_ORDER_DELETE = """
mutation AcpDraftOrderDelete($input: DraftOrderDeleteInput!) {
  draftOrderDelete(input: $input) {
    deletedId
    userErrors { field message }
  }
}
"""

#: Open drafts flask-acp created (tag ``acp``) not updated since a cutoff.
#: https://shopify.dev/docs/api/admin-graphql/latest/queries/draftOrders
ABANDONED_DRAFTS = """
query AcpAbandonedDrafts($query: String!, $after: String) {
  draftOrders(first: 50, after: $after, query: $query, sortKey: UPDATED_AT) {
    nodes {
      id status updatedAt reserveInventoryUntil tags
      customAttributes { key value }
    }
    pageInfo { hasNextPage endCursor }
  }
}
"""

#: How many of each nested list one ``AcpOrderSync`` node reads. Shopify refuses
#: a query whose *requested* cost exceeds 1000 points; lists and connections
#: multiply their children's cost by ``first``, so these bounds, with
#: ``ORDER_SYNC_LIMITS["orders"]`` orders per page, keep a page near 800
#: (https://shopify.dev/docs/api/usage/rate-limits#cost-calculation). The adapter
#: warns when a list comes back full (it may be cut short; webhooks still report
#: what reconcile does not see).
ORDER_SYNC_LIMITS: dict[str, int] = {
    "orders": 2, "fulfillments": 5, "fulfillment_lines": 20, "refunds": 5, "transactions": 3,
}

#: Orders flask-acp made (tag ``acp``) that changed since a time, with what the
#: agent is told about: cancellation, fulfillments (status, tracking, units per
#: variant) and refunds (their money movements). ``flask acp reconcile``.
#: https://shopify.dev/docs/api/admin-graphql/latest/queries/orders
ORDERS_CHANGED = """
query AcpOrdersChanged($query: String!, $after: String) {
  orders(first: %(orders)d, after: $after, query: $query, sortKey: UPDATED_AT) {
    nodes { ...AcpOrderSync }
    pageInfo { hasNextPage endCursor }
  }
}
fragment AcpOrderSync on Order {
  id name updatedAt cancelledAt cancelReason presentmentCurrencyCode tags
  customAttributes { key value }
  fulfillments(first: %(fulfillments)d) {
    id status displayStatus updatedAt
    trackingInfo(first: 1) { company number url }
    fulfillmentLineItems(first: %(fulfillment_lines)d) {
      nodes { quantity lineItem { id variant { id } } }
    }
  }
  refunds(first: %(refunds)d) {
    id legacyResourceId note createdAt
    transactions(first: %(transactions)d) {
      nodes { kind status amountSet { ...AcpMoney } }
    }
  }
}
""" % ORDER_SYNC_LIMITS + _MONEY  # noqa: UP031 - GraphQL braces make str.format awkward

#: How many products one ``AcpProducts`` page reads and how many variants of
#: each. Requested cost (https://shopify.dev/docs/api/usage/rate-limits#cost-calculation):
#: a variant costs 3 (``image``, ``inventoryItem``, ``selectedOptions``), its
#: connection 2 + 50 x 3 = 152, a product about 155 with ``featuredMedia``, the
#: page 2 + 6 x 155 = 932, under Shopify's 1000-point ceiling. A product with
#: more variants than ``variants`` is listed with its first ones and a warning.
#: The paginated ``products`` query is used rather than a bulk operation: no
#: polling and no JSONL download, and a page is what the feed pushes at a time
#: anyway; a catalog of 10 000 products is ~1700 calls, paced by the throttle
#: bucket (:class:`.client.ShopifyClient` waits when Shopify says ``THROTTLED``).
PRODUCT_PAGE_LIMITS: dict[str, int] = {"products": 6, "variants": 50}

# A product as the feed lists it: title, plain-text description, storefront URL,
# featured image, and per variant its price and compare-at price, barcode
# (GTIN/UPC/EAN), options, image and what the stock verdict needs.
# https://shopify.dev/docs/api/admin-graphql/latest/objects/Product
_PRODUCT = """
fragment AcpProduct on Product {
  id legacyResourceId title description onlineStoreUrl status publishedAt
  featuredMedia { alt ... on MediaImage { image { url altText width height } } }
  variants(first: %(variants)d) {
    nodes {
      id legacyResourceId title sku barcode price compareAtPrice
      availableForSale inventoryPolicy sellableOnlineQuantity
      inventoryItem { tracked }
      selectedOptions { name value }
      image { url altText width height }
    }
    pageInfo { hasNextPage }
  }
}
""" % PRODUCT_PAGE_LIMITS  # noqa: UP031 - GraphQL braces make str.format awkward

#: One page of the active products, by id (``flask acp feed export|push``).
#: https://shopify.dev/docs/api/admin-graphql/latest/queries/products
PRODUCTS = """
query AcpProducts($query: String!, $after: String) {
  shop { currencyCode }
  products(first: %(products)d, after: $after, query: $query, sortKey: ID) {
    nodes { ...AcpProduct }
    pageInfo { hasNextPage endCursor }
  }
}
""" % PRODUCT_PAGE_LIMITS + _PRODUCT  # noqa: UP031

#: Some products by GID, or the product of an inventory item's variant (an
#: incremental feed update after a ``products/update`` or
#: ``inventory_levels/update`` webhook); ``null`` for ids that are gone.
#: https://shopify.dev/docs/api/admin-graphql/latest/queries/nodes
PRODUCTS_BY_ID = """
query AcpProductsById($ids: [ID!]!) {
  shop { currencyCode }
  nodes(ids: $ids) {
    __typename
    ... on Product { ...AcpProduct }
    ... on InventoryItem { variant { product { ...AcpProduct } } }
  }
}
""" + _PRODUCT

#: every document above, for schema validation.
ALL_DOCUMENTS: tuple[str, ...] = (
    VARIANTS, SHOP_CURRENCIES, DELIVERY_OPTIONS, DRAFT_ORDER_CREATE, DRAFT_ORDER_UPDATE,
    DRAFT_ORDER, DRAFT_ORDER_STATUS, DRAFT_ORDER_COMPLETE, TAGS_ADD, DRAFT_ORDER_DELETE,
    ABANDONED_DRAFTS, ORDERS_CHANGED, PRODUCTS, PRODUCTS_BY_ID,
)

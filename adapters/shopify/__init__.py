"""Shopify adapter for flask-acp (see issue: Shopify adapter). Not implemented yet."""

"""WooCommerce adapter for flask-acp (see issue: WooCommerce adapter). Not implemented yet."""

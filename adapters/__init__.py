"""flask-acp platform adapters (installed as ``flask_acp_adapters``)."""

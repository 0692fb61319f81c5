"""Outside services, each behind an adapter with a development fake: SMS gateways, WeChat login."""

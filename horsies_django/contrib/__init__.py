"""Optional integrations: `sentry` (sentry-sdk) and `prometheus` (prometheus-client).

Install them with the extras: `pip install "horsies-django[sentry,prometheus]"`."""

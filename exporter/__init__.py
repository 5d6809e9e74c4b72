"""botwatch: a Prometheus exporter for the people on call for two trading bots."""

__version__ = "0.1.0"

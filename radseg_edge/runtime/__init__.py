"""Everything after the labels: overlays, sources and sinks, the streaming pipeline, telemetry."""

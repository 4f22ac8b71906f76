"""The portal: health and uptime, DORA metrics, scorecards and cost, from real events.

Events come in raw (webhooks, `POST /v1/events`, and the platform's own events
published on the event bus, actions_server/events.py, and recorded by
`events.record_platform_event`), are stored as they came, and are
normalised into changes, deployments and incidents, as Four Keys does. Every
figure the pages show is computed from those tables on request; the JSON API
serves the same numbers. See docs/dora.md for the definitions.
"""

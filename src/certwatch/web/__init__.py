"""The web service: health check, Prometheus metrics, team calendar feeds.

`app.create_app` builds the FastAPI application over a store session
factory; `server.run_web_and_monitor` serves it with uvicorn beside the
monitor loop in one process.
"""

"""Our Paddle Serving pipeline service (Starlette + uvicorn): config, protocol, batching, app, process control.

Entry points: ``deploy/serving_python/web_service.py`` (the server, :mod:`.server`),
``pipeline_http_client.py`` (the client), ``python -m mobilenetv3_tipc.serving.process``
(start/wait/stop a server from a shell script), ``python -m mobilenetv3_tipc.serving.loadgen``
(the HTTP load generator).
"""

"""gunicorn's settings that every way of starting the web server shares (Procfile, rundemo,
Dockerfile, docker-compose.yml): gunicorn reads this file from the working directory."""

# Request lines up to gunicorn's maximum reach Django, which answers a URL over its own limit
# with a JSON 414 (webapp/feed/middleware.py) rather than gunicorn's HTML page.
limit_request_line = 8190

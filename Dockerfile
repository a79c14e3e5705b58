# One image for web, proxy, worker, beat and the simulator (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

WORKDIR /app
# Debian's nginx, the proxy in front of gunicorn (manage.py proxy runs it as the app user).
RUN apt-get update && apt-get install -y --no-install-recommends nginx && rm -rf /var/lib/apt/lists/*
COPY requirements.txt .
# PyTorch's CPU index keeps torch==2.13.0 to the CPU build (PyPI's default is a multi-GB CUDA one).
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt

COPY . .
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput --verbosity 0 \
    && useradd --create-home app && mkdir -p var && chown -R app var
USER app

# Alone (docker run -p 8000:8000), the image serves as `make serve` does: gunicorn on a unix
# socket behind the proxy, which listens on every interface of the container.
ENV LISTEN_HOST=0.0.0.0
EXPOSE 8000
CMD ["python", "manage.py", "rundemo", "--only", "web", "proxy"]
